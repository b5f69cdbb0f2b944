"""The flow set every case study runs, built from its ``CaseSpec``: the book's seven steps as Prefect tasks.

A case declares what is specific to it (``pipelines.core.case``); this module owns the mechanics that
are the same in every case, once:

- **ingest** lands one batch of every table (a simulated window, or the user's files) in ``raw/``;
- **validate** gates the batch as a whole: every table passes and the batch reaches ``validated/``, or
  the batch is quarantined whole and nothing validated changes; the first passing batch claims the
  home for its world (``pipelines.core.worlds``);
- **features** writes the case's feature tables and its file of the shared user profile, runs
  ``feast apply`` and loads the online store for the window the data cover;
- **train** (and the case's extra steps, e.g. ``index``) produce the challenger model;
- **evaluate** scores the challenger *and the serving champion* on the same, newest test window, writes
  the metrics file and the plots, and registers the challenger with its metrics and lineage;
- **deploy** builds the Bento, starts the service on the challenger and sends real requests, and only
  then makes it the champion, if it beat the champion on that window: on any failure the old champion
  keeps serving;
- **monitor** scores the next window with the champion and compares it with the test window in
  Evidently; an alarm retrains (ingest the window, then validate through deploy).

Every step is a Prefect task whose cache key is what it really reads: the params it declares, the
content of its input files, its world and the code it runs. It records a manifest of what it wrote when
it finishes, so a rerun after a crash (even SIGKILL) serves finished steps from the cache and redoes the
rest; deleted or edited outputs run it again.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.core.case import Report, Run, Trained
from pipelines.core.io import atomic_path, read_json, write_json, write_parquet
from pipelines.core.settings import PROJECT_ROOT, ConfigError

Progress = Callable[[str, str, float], None]
"""Called as ``progress(step, state, seconds)``; state is running, done, cached or failed."""


def window_batch_id(start_day: int, n_days: int) -> str:
    """A window's batch name, e.g. ``d000-d014``: sortable, and the same for a rerun of the same window."""
    return f"d{start_day:03d}-d{start_day + n_days:03d}"


def file_batch_id(files: Mapping[str, Path]) -> str:
    """A file batch is named by its content: the same files land once, changed files land anew."""
    h = hashlib.sha256()
    for name in sorted(files):
        root = Path(files[name])
        h.update(name.encode())
        for f in _files([root]):  # a folder input: every file's relative path and bytes
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() if root.is_dir() else f.read_bytes())
    return f"file-{h.hexdigest()[:12]}"


# -- content fingerprints and manifests -----------------------------------------------------------------
def _files(roots: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for root in roots:
        if root.is_dir():
            out += sorted(p for p in root.rglob("*") if p.is_file() and ".tmp-" not in p.name)
        elif root.is_file():
            out.append(root)
    return out


def fingerprint(roots: Iterable[Path]) -> str:
    """Hash of every file's path and bytes under ``roots``: content decides, not mtimes.

    A batch restored byte for byte is the same input; a file touched but unchanged is too.
    """
    h = hashlib.sha256()
    for f in _files(roots):
        h.update(str(f).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def code_roots(case: str) -> list[Path]:
    """The code a case's steps run: the core, the shared world, its package, its Feast module and service."""
    return [PROJECT_ROOT / "pipelines" / "core", PROJECT_ROOT / "pipelines" / "world",
            PROJECT_ROOT / "pipelines" / case, PROJECT_ROOT / "feature_repo" / "user_features.py",
            PROJECT_ROOT / "feature_repo" / f"{case}_features.py", PROJECT_ROOT / "services" / case]


def code_fingerprint(case: str) -> str:
    """Hash of the source a case's steps run: edited code is never served from the cache."""
    return fingerprint(p for p in _files(code_roots(case)) if p.suffix in (".py", ".yaml"))


def _manifest(run: Run, step: str) -> Path:
    return run.work("manifests") / f"{step}.json"


def _record(run: Run, step: str, writes: Iterable[Path]) -> None:
    """Called when a step finished: its outputs are complete and consistent."""
    writes = sorted({Path(p) for p in writes})
    write_json({"writes": [str(p) for p in writes], "fingerprint": fingerprint(writes)}, _manifest(run, step))


def _intact(run: Run, step: str) -> bool:
    m = _manifest(run, step)
    if not m.exists():
        return False
    doc = read_json(m)
    files = [Path(p) for p in doc["writes"]]
    return all(p.exists() for p in files) and fingerprint(files) == doc["fingerprint"]


# -- what each step reads -------------------------------------------------------------------------------
def _model_file(run: Run, step: str) -> Path:
    """Each model-producing step writes its own file, so an extra step never edits train's output."""
    return run.work("model") / f"{step}.pkl"


def _challenger_file(run: Run) -> Path:
    last = [s.name for s in run.spec.extra_steps] or ["train"]
    return _model_file(run, last[-1])


def _profile_file(run: Run) -> Path:
    from pipelines.core.features import user_profile_file

    return user_profile_file(run.paths, run.case)


def _review_labels(run: Run) -> list[Path]:
    """A review queue's labels are training input: a new human label retrains, a new queued item does not."""
    from pipelines.core.review import labels_file

    return [labels_file(run.paths, run.case)] if run.spec.review_queue else []


def _reads(run: Run, step: str, args: Mapping[str, Any]) -> list[Path]:
    """The files a step's result depends on; only its own (not another case's user file)."""
    p, case = run.paths, run.case
    if step == "ingest":
        return [Path(f) for f in run.files.values()]
    if step == "validate":
        return sorted(p.raw(case).glob(f"*/{args['batch']}.parquet"))
    if step == "features":
        return [p.validated(case)]
    if step == "train":
        return [p.validated(case), p.features(case), _profile_file(run), *_review_labels(run)]
    if step == "evaluate":
        return [p.validated(case), p.features(case), _profile_file(run), run.work("artifacts"),
                _challenger_file(run)]
    if step == "deploy":
        return [run.work("challenger.json")]
    if step == "monitor":  # never served from the cache (fresh traffic), but keyed like any step
        return [run.work("reference.parquet")]
    extra = run.spec.extra(step)
    before = [s.name for s in run.spec.extra_steps]
    previous = before[before.index(step) - 1] if before.index(step) else extra.after
    return [_model_file(run, previous)]


def _param_keys(run: Run, step: str) -> tuple[str, ...]:
    sp = run.spec.step_params
    base = {"ingest": ("scale", "seed", *sp.ingest), "features": sp.features, "train": ("seed", *sp.train),
            "evaluate": sp.evaluate, "deploy": ("deploy", "serving"), "monitor": ("scale", "seed", "monitor")}
    if step in base:
        return tuple(base[step])
    if step == "validate":
        return ()
    return run.spec.extra(step).reads


def _params_blob(run: Run, step: str) -> dict[str, Any]:
    dumped = run.params.model_dump(mode="json")
    return {k: dumped.get(k) for k in _param_keys(run, step)}


def _cache_key(_context: Any, parameters: dict[str, Any]) -> str:
    run: Run = _unquoted(parameters["run"])
    step, args = parameters["step"], parameters["args"]
    blob = json.dumps({"case": run.case, "step": step, "world": run.world.id, "home": str(run.paths.home),
                       "params": _params_blob(run, step), "args": args,
                       "reads": fingerprint(_reads(run, step, args)), "code": code_fingerprint(run.case)},
                      sort_keys=True, default=str)
    return f"casebook-{run.case}-{step}-" + hashlib.sha256(blob.encode()).hexdigest()[:32]


def _transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry only what can fail transiently (I/O, network); a bad file or config fails the same way again."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, OSError | TimeoutError) and not isinstance(exc, FileNotFoundError | PermissionError)


# -- the step bodies ------------------------------------------------------------------------------------
def _ingest(run: Run, start_day: int, n_days: int, drift: float) -> str:
    if run.world.source == "file":
        assert run.spec.source.read_files is not None
        tables, batch = run.spec.source.read_files(run, run.files), file_batch_id(run.files)
    else:
        tables = run.spec.source.simulate(run, start_day, n_days, drift)
        batch = window_batch_id(start_day, n_days)
    missing = [t.name for t in run.spec.tables if t.name not in tables]
    if missing:
        raise ValueError(f"{run.case}'s source returned no table(s) {missing}")
    written = [write_parquet(tables[t.name], run.paths.raw(run.case) / t.name / f"{batch}.parquet")
               for t in run.spec.tables]
    _record(run, "ingest", written)
    return batch


def _validate(run: Run, batch: str) -> dict[str, str]:
    from pipelines.core import worlds
    from pipelines.core.validation import gate_batch

    raw = {t.name: run.paths.raw(run.case) / t.name / f"{batch}.parquet" for t in run.spec.tables}
    out = gate_batch(raw, run.spec.tables, run.paths.validated(run.case), run.paths.quarantine(run.case))
    worlds.claim(run.paths, run.world)
    _record(run, "validate", out.values())
    return {k: str(v) for k, v in out.items()}


def _features(run: Run) -> dict[str, Any]:
    import pandas as pd

    from pipelines.core import feast
    from pipelines.core.features import write_user_profile

    spec = run.spec.features
    assert spec is not None
    tables = spec.build(run)
    written = [write_parquet(df, run.paths.features(run.case) / f"{name}.parquet") for name, df in tables.items()]
    profile = None
    if spec.users:
        users = run.validated(spec.users)
        written.append(write_user_profile(users, run.paths, run.case))
        profile = users["signup_ts"]
    feast.apply(run.case, run.store)
    stamps = [df["event_timestamp"] for df in tables.values() if len(df)] + ([profile] if profile is not None else [])
    start = min(s.min() for s in stamps).floor("D") - pd.Timedelta(days=1)
    end = max(s.max() for s in stamps).ceil("D") + pd.Timedelta(days=1)
    t0 = time.perf_counter()
    # incremental: a rerun or a retrain on a new window loads what is new, not the whole history again
    views = feast.materialize(run.store, spec.service, start.to_pydatetime(), end.to_pydatetime(), incremental=True)
    _record(run, "features", written)
    return {"rows": {n: len(df) for n, df in tables.items()}, "online": {
        "views": views, "from": start.isoformat(), "until": end.isoformat(),
        "seconds": round(time.perf_counter() - t0, 1)}}


def _save_model(model: Any, target: Path) -> Path:
    """cloudpickle, as BentoML's picklable models: a model may hold classes defined inside functions."""
    import cloudpickle

    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        cloudpickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
    return target


def _load_model(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"no trained model at {path}: run the train step first")
    with open(path, "rb") as f:
        return pickle.load(f)  # our own file, written by _save_model


def _train(run: Run) -> dict[str, Any]:
    trained: Trained = run.spec.train(run)
    written = [write_parquet(df, run.work("artifacts") / f"{n}.parquet") for n, df in trained.artifacts.items()]
    written.append(_save_model(trained.model, _model_file(run, "train")))
    written.append(write_json(trained.lineage, run.work("artifacts") / "lineage.json"))
    _record(run, "train", written)
    return {"artifacts": sorted(trained.artifacts), "lineage": {k: v for k, v in trained.lineage.items()
                                                                if k != "params"}}


def _extra(run: Run, name: str) -> dict[str, Any]:
    step = run.spec.extra(name)
    model = _load_model(_reads(run, name, {})[0])
    result = step.body(run, model)
    written = [_save_model(model, _model_file(run, name)), write_json(result, run.work(f"{name}.json")),
               *(run.work(o) for o in step.outputs)]
    _record(run, name, written)
    return result


def _save_plots(run: Run, report: Report) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    for name, fig in report.plots.items():
        target = run.paths.plots(run.case) / f"{name}.png"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        out.append(target)
    out += [write_json(rows, run.paths.plots(run.case) / f"{name}.json") for name, rows in report.plot_data.items()]
    return out


def _headline(run: Run, report: Report) -> float:
    key = run.spec.metric.key
    try:
        return float(report.metrics["model"][key])
    except (KeyError, TypeError, ValueError) as exc:
        raise RuntimeError(f"{run.case}.evaluate returned no metrics['model'][{key!r}]") from exc


def _evaluate(run: Run) -> dict[str, Any]:
    """Score the challenger and the champion on the same window; register the challenger."""
    import math

    from pipelines.core import registry

    model = _load_model(_challenger_file(run))
    report = run.spec.evaluate(run, model)
    value, metric = _headline(run, report), run.spec.metric
    champion = None
    if (tag := registry.champion(run.case)) is not None:
        try:
            _, served = registry.load_champion(run.case)
            champion = {"tag": tag, "value": _headline(run, run.spec.evaluate(run, served))}
        except (LookupError, RuntimeError) as exc:  # gone from the store, or from another era of the code
            champion = {"tag": tag, "value": None, "error": str(exc).splitlines()[0]}
    lineage = read_json(run.work("artifacts") / "lineage.json")
    extras = {s.name: read_json(run.work(f"{s.name}.json")) for s in run.spec.extra_steps}
    metrics = {**report.metrics, **extras}
    tag = registry.save(run.case, model, metrics=metrics, lineage=lineage)
    best = champion["value"] if champion else None
    beats = math.isfinite(value) and (best is None or not math.isfinite(best) or metric.better(value, best))
    verdict = {"metric": metric.key, "lower_is_better": metric.lower_is_better, "challenger": tag,
               "challenger_value": value, "champion": champion, "beats_champion": beats,
               "window": lineage.get("test_window")}
    metrics_doc = {**metrics, "model_tag": tag, "world": run.world.describe(), "promotion": verdict}
    written = [write_json(metrics_doc, run.paths.metrics(run.case)), *_save_plots(run, report),
               write_json(verdict, run.work("challenger.json"))]
    if report.reference is not None:
        written.append(write_parquet(report.reference, run.work("reference.parquet")))
    _record(run, "evaluate", written)
    return {"model_tag": tag, metric.key: value, "champion": champion, "beats_champion": verdict["beats_champion"]}


def _deploy(run: Run) -> dict[str, Any]:
    """Build, prove on a real request, then promote; the champion pointer moves last or not at all."""
    from pipelines.core import registry, serving

    verdict = read_json(run.work("challenger.json"))
    tag, metric = verdict["challenger"], run.spec.metric
    out: dict[str, Any] = {"challenger": tag, "promoted": False}
    current = registry.champion(run.case)
    was = (verdict["champion"] or {}).get("tag")
    if current == tag:
        out["reason"] = f"{tag} is already the champion"
    elif current != was:
        out["reason"] = (f"the champion changed to {current} after {tag} was evaluated against {was}: "
                         f"run the evaluate step again")
    elif not verdict["beats_champion"]:
        champ = verdict["champion"]
        out["reason"] = (f"{tag} not promoted: {metric.key}={verdict['challenger_value']:.6g} does not beat champion "
                         f"{champ['tag']} ({metric.key}={champ['value']:.6g} on the same window, "
                         f"{'lower' if metric.lower_is_better else 'higher'} is better)")
    else:
        # The Bento build (in-process file work) runs while the trial service starts (a subprocess, most
        # of deploy's time); one worker is enough to prove the challenger on real requests.
        with ThreadPoolExecutor(1) as pool:
            build = (pool.submit(serving.build_bento, run.case, run.spec.serving_packages, run.paths)
                     if run.params.deploy.build else None)
            if run.params.deploy.smoke_test:
                with serving.running_service(run.case, paths=run.paths, model_tag=tag, workers=1) as url:
                    out["smoke_test"] = run.spec.smoke_test(run, url)
            if build is not None:
                out["bento"] = build.result()
        champ = verdict["champion"]
        against = (f"beats {champ['tag']} ({metric.key}={champ['value']:.6g}) on the same window"
                   if champ and champ.get("value") is not None else "first champion")
        out["reason"] = f"{tag} promoted: {metric.key}={verdict['challenger_value']:.6g} {against}"
        registry.set_champion(run.case, tag, metric=metric.key, value=verdict["challenger_value"],
                              lower_is_better=metric.lower_is_better, window=verdict.get("window"))
        out["promoted"] = True
    out["champion"] = registry.champion(run.case)
    _record(run, "deploy", [write_json(out, run.work("deploy.json"))])
    return out


def _monitor(run: Run, start_day: int, n_days: int, drift: float) -> dict[str, Any]:
    import pandas as pd

    from pipelines.core import registry
    from pipelines.core.monitoring import drift_report
    from pipelines.core.monitoring_config import load_monitoring

    if run.world.source != "simulator":
        raise ConfigError("monitor scores the next simulated window; with a file source, land the new window "
                          f"as another file instead (`casebook run {run.case} --source file ...`)")
    config = load_monitoring(run.case, run.paths)
    window = run.spec.source.simulate(run, start_day, n_days, drift)
    tag, model = registry.load_champion(run.case)
    current = run.spec.score_window(run, model, window)
    reference_file = run.work("reference.parquet")
    if not reference_file.exists():
        raise FileNotFoundError(f"no reference window at {reference_file}: run `casebook run {run.case}` first")
    reference = pd.read_parquet(reference_file)
    cols = config.columns
    target = cols.target if cols.target and cols.target in current and cols.target in reference else None
    batch = window_batch_id(start_day, n_days)
    result = drift_report(run.case, reference, current, numerical=list(cols.numerical),
                          categorical=list(cols.categorical), prediction=cols.prediction, target=target,
                          thresholds=config.thresholds(), workspace=run.paths.evidently_workspace,
                          html_dir=run.paths.monitoring(run.case),
                          tags=[f"window:{batch}", f"drift:{drift}", f"model:{tag}", f"world:{run.world.id}"])
    out = {"window": batch, "drift": drift, "model_tag": tag, **result.to_dict()}
    write_json(out, run.paths.monitoring(run.case) / "latest.json")
    return out


BODIES: dict[str, Callable[..., Any]] = {"ingest": _ingest, "validate": _validate, "features": _features,
                                         "train": _train, "evaluate": _evaluate, "deploy": _deploy,
                                         "monitor": _monitor}


def _unquoted(value: Any) -> Any:
    return value.unquote() if hasattr(value, "unquote") else value


# -- the Prefect task and the driver --------------------------------------------------------------------
@dataclass
class _Tracker:
    """Which step bodies really ran (a cache hit runs none) and how long each took.

    The console's step lines read ``ran``; the flow benchmark reads ``seconds`` to tell the work from
    the orchestration around it.
    """

    ran: set[str] = field(default_factory=set)
    seconds: list[tuple[str, float]] = field(default_factory=list)


TRACKER = _Tracker()


def _run_step(run: Run, step: str, args: dict[str, Any]) -> Any:
    run = _unquoted(run)
    TRACKER.ran.add(step)
    body = BODIES.get(step)
    t0 = time.perf_counter()
    try:
        return body(run, **args) if body else _extra(run, step)
    finally:
        TRACKER.seconds.append((step, time.perf_counter() - t0))


def _task(step: str, case: str) -> Any:
    from prefect import task

    retries = 2 if step in ("ingest", "monitor") else 0  # they read a source that can be briefly away
    return task(_run_step, name=f"{case}.{step}", cache_key_fn=_cache_key, persist_result=True,
                retries=retries, retry_delay_seconds=2, retry_condition_fn=_transient)


def call(run: Run, step: str, progress: Progress | None = None, fresh: bool = False, **args: Any) -> Any:
    """Run one step as its Prefect task; a step whose outputs are missing or changed runs again."""
    from prefect.utilities.annotations import quote

    t0 = time.perf_counter()
    if progress:
        progress(step, "running", 0.0)
    TRACKER.ran.discard(step)
    refresh = fresh or not _intact(run, step)
    try:
        # quote: Prefect must not walk the run (params, specs) looking for futures; the task gets it as is
        result = _task(step, run.case).with_options(refresh_cache=refresh)(run=quote(run), step=step, args=args)
    except BaseException:
        if progress:
            progress(step, "failed", time.perf_counter() - t0)
        raise
    if progress:
        progress(step, "done" if step in TRACKER.ran else "cached", time.perf_counter() - t0)
    return result


def drive(run: Run, steps: list[str], progress: Progress | None = None, drift: float | None = None
          ) -> dict[str, Any]:
    """Run the chosen steps in the flow's order over the history window; returns each step's result."""
    from pipelines.world.population import SCALES

    history = SCALES[run.params.scale].days
    mon = run.params.monitor
    drift = mon.drift if drift is None else drift
    out: dict[str, Any] = {}
    batch = window_batch_id(0, history) if run.world.source == "simulator" else (
        file_batch_id(run.files) if run.files else None)
    for step in steps:
        if step == "ingest":
            out[step] = batch = call(run, "ingest", progress, start_day=0, n_days=history, drift=0.0)
        elif step == "validate":
            if batch is None:
                raise ConfigError(f"validate needs a batch: run `casebook run {run.case} --source file` with the "
                                  "files, or the ingest step first")
            out[step] = call(run, "validate", progress, batch=batch)
        elif step == "monitor":
            # Monitoring always looks at fresh traffic: never served from the cache.
            out[step] = call(run, "monitor", progress, fresh=True, start_day=history, n_days=mon.days, drift=drift)
            if out[step]["alarm"] and mon.retrain_on_alarm:
                out["retrain"] = retrain(run, history, mon.days, drift, progress)
        else:
            out[step] = call(run, step, progress)
    return out


def retrain(run: Run, start_day: int, n_days: int, drift: float, progress: Progress | None = None
            ) -> dict[str, Any]:
    """Continual learning: land the new window, then validate through deploy (promotes only if better)."""
    batch = call(run, "ingest", progress, start_day=start_day, n_days=n_days, drift=drift)
    out: dict[str, Any] = {"ingest": batch, "validate": call(run, "validate", progress, batch=batch)}
    for step in run.spec.steps:
        if step not in ("ingest", "validate", "monitor"):
            out[step] = call(run, step, progress)
    return out


def flow(run: Run, steps: list[str], progress: Progress | None = None, drift: float | None = None
         ) -> dict[str, Any]:
    """The case's flow run: one Prefect flow named after the case, its steps as tasks."""
    from prefect import flow as prefect_flow

    @prefect_flow(name=run.case, log_prints=True, validate_parameters=False)
    def flow_set(steps: list[str], world: str, drift: float | None) -> dict[str, Any]:
        return drive(run, steps, progress, drift)

    return flow_set(steps, run.world.id, drift)


# -- opening a run --------------------------------------------------------------------------------------
def open_run(spec: Any, *, scale: str | None = None, seed: int | None = None, source: str | None = None,
             files: Mapping[str, Path | str] | None = None, settings: Mapping[str, Any] | None = None) -> Run:
    """Check the params (with the run's overrides) and the files before any work; find the world's home.

    A required file input implies ``--source file``; an optional one alone is a mistake worth naming.
    ``settings`` are nested params.yaml keys for this run only (``--set``), under the options above.
    """
    from pipelines.core import worlds
    from pipelines.core.case import World
    from pipelines.core.params import case_params

    inputs = {i.name: i for i in spec.source.file_inputs}
    files = {k: v for k, v in (files or {}).items() if v is not None}
    unknown = sorted(set(files) - set(inputs))
    if unknown:
        readers = f"it reads {', '.join('--' + n for n in inputs)}" if inputs else "it reads no files"
        raise ConfigError(f"{spec.name} takes no file input {', '.join('--' + n for n in unknown)}; {readers}")
    overrides: dict[str, Any] = {**(settings or {}),
                                 **{k: v for k, v in {"scale": scale, "seed": seed}.items() if v is not None}}
    if files:
        overrides["file"] = {k: str(Path(v).expanduser().resolve()) for k, v in files.items()}
        if source is None and any(inputs[k].required for k in files):
            source = "file"
    if source is not None:
        if source == "file" and spec.source.read_files is None:
            raise ConfigError(f"{spec.name} has no file source; it runs on the simulator only")
        overrides["source"] = source
    params = case_params(spec, overrides)
    chosen = getattr(params, "source", "simulator")
    given: dict[str, Path] = {}
    if chosen == "file":
        section = params.file
        for name, inp in inputs.items():
            value = getattr(section, name)
            if value is None:
                if inp.required:
                    raise ConfigError(f"the file source needs an {name} file: --{name} PATH "
                                      f"(or {spec.name}.file.{name} in params.yaml)")
                continue
            if not (Path(value).is_dir() if inp.kind == "dir" else Path(value).is_file()):
                raise ConfigError(f"{name} {'folder' if inp.kind == 'dir' else 'file'} {value} does not exist")
            given[name] = Path(value)
    elif files:
        first = next(n for n, i in inputs.items() if i.required)
        raise ConfigError(f"{', '.join('--' + n for n in files)} only goes with the file source: "
                          f"add --{first} PATH")
    world = World(source=chosen, scale=params.scale, seed=params.seed)
    return Run(spec, params, worlds.home_of(world), world, given)


def chosen_steps(run: Run, steps: Iterable[str] | None) -> list[str]:
    """The steps to run, in the flow's order; unknown names are an error, not a silent skip."""
    known = list(run.spec.steps)
    if steps is None:  # monitoring scores a simulated window: a file world has none to score
        return [s for s in known if s != "monitor" or run.world.source == "simulator"]
    bad = [s for s in steps if s not in known]
    if bad:
        raise ConfigError(f"unknown step(s) {bad} for {run.case}; choose from {known}")
    return [s for s in known if s in set(steps)]


def run_case(spec: Any, steps: Iterable[str] | None = None, *, scale: str | None = None, seed: int | None = None,
             drift: float | None = None, source: str | None = None, files: Mapping[str, Any] | None = None,
             progress: Progress | None = None, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run a case's chosen steps (all by default) as one Prefect flow run, in its world's home."""
    from pipelines.core import worlds
    from pipelines.core.settings import apply_privacy_defaults

    apply_privacy_defaults()
    run = open_run(spec, scale=scale, seed=seed, source=source, files=files, settings=settings)
    chosen = chosen_steps(run, steps)
    with worlds.living_in(run.paths):
        return flow(run, chosen, progress, drift)
