"""The ``casebook`` command line. Heavy libraries (and the case specs) are imported inside commands, so
``--help`` is instant."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar

import typer

from pipelines.cases import CASES

app = typer.Typer(help="Casebook: the ML system design case studies as runnable pipelines.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


class Scale(StrEnum):
    tiny = "tiny"
    small = "small"
    large = "large"


class Source(StrEnum):
    simulator = "simulator"
    file = "file"


ScaleOpt = Annotated[Scale | None, typer.Option(help="world size; default from params.yaml")]
SeedOpt = Annotated[int | None, typer.Option(min=0, help="simulator seed; default from params.yaml")]
SourceOpt = Annotated[Source | None, typer.Option(help="where the data comes from; default from params.yaml")]


def _fail(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


def _names(case: str, allow_all: bool = True) -> list[str]:
    if case == "all" and allow_all:
        return list(CASES)
    if case not in CASES:
        _fail(f"unknown case study {case!r}; choose one of: {', '.join(CASES)}{' or all' if allow_all else ''}")
    return [case]


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user can cause (bad data, params, files, order of steps): one paragraph, no traceback."""
    from pipelines.core.settings import ConfigError
    from pipelines.core.validation import ValidationFailed

    return ValidationFailed, ConfigError, FileNotFoundError, LookupError, ValueError


@app.command("list")
def list_cases() -> None:
    """List the case studies and the last headline metric of each (in the default world)."""
    from rich.console import Console
    from rich.table import Table

    from pipelines import cases
    from pipelines.core.flowset import open_run

    table = Table("case", "title", "last metrics")
    for spec in cases.specs():
        try:
            run = open_run(spec)
            doc = json.loads(run.paths.metrics(spec.name).read_text())
            last = f"{spec.metric.key} {doc['model'][spec.metric.key]:.4f} ({run.world.describe()})"
        except (OSError, KeyError, ValueError, LookupError, TypeError):
            last = "- (not run yet)"
        table.add_row(spec.name, spec.title, last)
    Console().print(table)


class _StepLines:
    """One line per step: its state and duration; a spinner names the step that is running."""

    MARK: ClassVar[dict[str, str]] = {"done": "[green]✓[/]", "cached": "[blue]↺[/]", "failed": "[red]✗[/]"}

    def __init__(self, console: Any, case: str, status: Any) -> None:
        self.console, self.case, self.status = console, case, status

    def __call__(self, step: str, state: str, seconds: float) -> None:
        if state == "running":
            self.status.update(f"[bold]{self.case}[/]: {step} …")
            return
        note = " (from cache: inputs unchanged)" if state == "cached" else ""
        self.console.print(f"  {self.MARK[state]} {self.case} {step:<9} {seconds:7.1f} s{note}", highlight=False)


def _file_inputs(args: list[str]) -> dict[str, Path]:
    """``--name PATH`` pairs left over by the generic options: the case spec says which it takes."""
    out: dict[str, Path] = {}
    rest = list(args)
    while rest:
        flag = rest.pop(0)
        name, _, value = flag.partition("=")
        if not name.startswith("--") or len(name) < 3:
            _fail(f"unexpected argument {flag!r}; see `casebook run --help`")
        if not value:
            if not rest or rest[0].startswith("--"):
                _fail(f"{name} needs a path: {name} PATH")
            value = rest.pop(0)
        out[name[2:].replace("-", "_")] = Path(value)
    return out


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    case: Annotated[str, typer.Argument(help="a case study name, or 'all'. A case with a file source takes "
                                        "its inputs as --<input> PATH, e.g. video_recommendation: "
                                        "--interactions PATH [--items PATH] (see docs/<case>.md)")],
    step: Annotated[list[str] | None, typer.Option("--step", "-s", help="run only this step (repeatable)")] = None,
    scale: ScaleOpt = None,
    seed: SeedOpt = None,
    drift: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="drift of the monitored window")] = None,
    source: SourceOpt = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="a params.yaml key for this run only, "
                                                   "e.g. --set split.kind=per_user (repeatable)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show every tool's log on the terminal")] = False,
) -> None:
    """Run a case study's flow set (or some of its steps) as a Prefect flow."""
    _run(case, step, scale=scale, seed=seed, drift=drift, source=source, files=_file_inputs(ctx.args),
         verbose=verbose, settings=_settings(set_ or []))


def _settings(pairs: list[str]) -> dict[str, Any]:
    """``--set a.b=VALUE`` pairs as nested params keys; VALUE is read as YAML (``null``, ``5``, ``[a, b]``)."""
    import yaml

    from pipelines.core.params import merged

    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip(" ."):
            _fail(f"--set {pair!r}: write --set KEY=VALUE, e.g. --set split.kind=per_user")
        nested: Any = yaml.safe_load(value) if value.strip() else None
        for part in reversed(key.strip().split(".")):
            nested = {part: nested}
        out = merged(out, nested)
    return out


def _run(case: str, step: list[str] | None, *, scale: Scale | None = None, seed: int | None = None,
         drift: float | None = None, source: Source | None = None, files: dict[str, Path] | None = None,
         verbose: bool = False, settings: dict[str, Any] | None = None) -> None:
    from rich.console import Console

    from pipelines.core.console import route_logs
    from pipelines.core.settings import Paths, apply_privacy_defaults

    apply_privacy_defaults()
    names = _names(case)
    files = files or {}
    if (files or source or settings) and case == "all":
        _fail("--source, --set and file inputs go with one case study, not 'all'")
    console = Console()
    log = route_logs(verbose)
    from pipelines import cases
    from pipelines.core.flowset import run_case

    if step and case == "all":  # each case runs the chosen steps it has (only video has `index`)
        known = {s for spec in cases.specs() for s in spec.steps}
        if unknown := [s for s in step if s not in known]:
            _fail(f"unknown step(s) {unknown}; the case studies have {sorted(known)}")
    for name in names:
        steps = [s for s in step if s in cases.spec(name).steps or case != "all"] if step else None
        if steps == []:
            continue
        with console.status(f"[bold]{name}[/]: starting") as status:
            try:
                result = run_case(cases.spec(name), steps, scale=scale.value if scale else None, seed=seed,
                                  drift=drift, source=source.value if source else None, files=files,
                                  progress=_StepLines(console, name, status), settings=settings)
            except _user_errors() as exc:
                _fail(f"{name}: {exc}\n(the tools' full log: {log})")
        if "evaluate" in result:
            _print_report(name, scale=scale, seed=seed, source=source, files=files)
        for key in ("monitor",):
            if key in result:
                mon = result[key]
                console.print(f"monitor: drift share {mon['drift_share']:.2f}, alarm {mon['alarm']}, "
                              f"report {mon['html_path']}")
        if "retrain" in result:
            console.print(f"retrained on the new window: {result['retrain']['deploy']['reason']}")
        if "deploy" in result:
            console.print(f"deploy: {result['deploy']['reason']}")
    console.print(f"plots: {Paths.from_env().home / 'plots'}   log: {log}", highlight=False)


def _print_report(case: str, *, scale: Scale | None = None, seed: int | None = None, source: Source | None = None,
                  files: dict[str, Path] | None = None, missing_ok: bool = False) -> bool:
    """Print a case's last evaluation; False (and one line) for a case not run yet when ``missing_ok``."""
    from rich.console import Console
    from rich.table import Table

    from pipelines import cases
    from pipelines.core.flowset import open_run

    spec = cases.spec(case)
    try:
        run = open_run(spec, scale=scale.value if scale else None, seed=seed,
                       source=source.value if source else None, files=files)
    except _user_errors() as exc:
        _fail(f"{case}: {exc}")
    file = run.paths.metrics(case)
    if not file.exists():
        missing = f"no metrics for {case} in the world of {run.world.describe()}: run `casebook run {case}` first"
        if missing_ok:
            Console().print(f"{missing}.", highlight=False)
            return False
        _fail(f"{missing} ({file} is missing)")
    metrics = json.loads(file.read_text())
    # A case with several systems (e.g. each candidate generator alone) reports them all, one row each.
    rows = metrics.get("systems") or {k: metrics[k] for k in ("baseline", "model", "oracle") if k in metrics}
    keys = [k for k, v in next(iter(rows.values())).items() if isinstance(v, int | float) and k != "users"]
    covered = ", ".join(f"{v:,} {k}" for k, v in metrics.get("coverage", {}).items())
    table = Table(title=f"{case} — {run.world.describe()} — test window: {covered}")
    table.add_column("system")
    for k in keys:
        table.add_column(k, justify="right")
    for name, values in rows.items():
        table.add_row(name, *(f"{values[k]:.4f}" for k in keys))
    console = Console()
    console.print(table)
    for line in metrics.get("notes", []):  # a case's own lines (e.g. how each class's threshold was set)
        console.print(line, highlight=False, markup=False)
    verdict = metrics.get("promotion") or {}
    deploy = run.work("deploy.json")
    served = json.loads(deploy.read_text()) if deploy.exists() else None
    if served and served.get("challenger") == metrics.get("model_tag"):
        state = ("[green]serving[/] (promoted)" if served["promoted"] else
                 f"[yellow]a challenger that was not promoted[/]: {served['reason']}")
    else:
        state = "a challenger, not deployed yet (`--step deploy`)"
    console.print(f"model {metrics.get('model_tag')}: {state}", highlight=False)
    champ = verdict.get("champion")
    if champ and champ.get("value") is not None:
        console.print(f"on this window the champion {champ['tag']} scores {verdict['metric']} {champ['value']:.4f}, "
                      f"the challenger {verdict['challenger_value']:.4f}", highlight=False)
    return True


@app.command()
def report(
    case: Annotated[str, typer.Argument(help="a case study name, or 'all'")],
    scale: ScaleOpt = None,
    seed: SeedOpt = None,
    source: SourceOpt = None,
) -> None:
    """Print the last evaluation of a world (default: params.yaml's): model vs baseline vs oracle."""
    shown = [_print_report(name, scale=scale, seed=seed, source=source, missing_ok=case == "all")
             for name in _names(case)]
    if not any(shown):  # `all` with nothing run yet
        _fail("no case study has metrics in this world yet: run `casebook run all` (or one case) first")


@app.command()
def monitor(
    case: Annotated[str, typer.Argument(help="a case study name")],
    drift: Annotated[float, typer.Option(min=0.0, max=1.0, help="drift of the new window")] = 0.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Score a new window of traffic and write an Evidently drift report (retrains on alarm)."""
    _run(_names(case, allow_all=False)[0], ["monitor"], drift=drift, verbose=verbose)


@app.command()
def serve(
    case: Annotated[str, typer.Argument(help="a case study name")],
    port: Annotated[int, typer.Option(min=1, max=65535)] = 3000,
    host: Annotated[str, typer.Option(help="bind address; loopback unless you mean it")] = "127.0.0.1",
    scale: ScaleOpt = None,
    seed: SeedOpt = None,
    source: SourceOpt = None,
) -> None:
    """Serve the champion model of a case over HTTP (BentoML); the Swagger UI at /, the spec at /docs.json."""
    from pipelines import cases
    from pipelines.core import registry
    from pipelines.core.flowset import open_run
    from pipelines.core.serving import SERVICE_ENV, service_target
    from pipelines.core.settings import PROJECT_ROOT, apply_privacy_defaults

    apply_privacy_defaults()
    name = _names(case, allow_all=False)[0]
    try:
        r = open_run(cases.spec(name), scale=scale.value if scale else None, seed=seed,
                     source=source.value if source else None)
    except _user_errors() as exc:
        _fail(f"{name}: {exc}")
    from pipelines.core import worlds

    with worlds.living_in(r.paths):
        champion = registry.champion(name)
    if champion is None:  # the service would crash-loop on start: say it once instead
        _fail(f"{name} has no champion model in the world of {r.world.describe()}: run `casebook run {name}` first")
    os.environ["CASEBOOK_HOME"] = str(r.paths.home)  # for the server this process becomes
    os.environ["BENTOML_HOME"] = str(r.paths.models)
    os.environ.update(SERVICE_ENV)
    os.chdir(PROJECT_ROOT)
    # The venv's bentoml, whatever PATH says: `casebook` may run without an activated venv.
    os.execv(sys.executable, [sys.executable, "-m", "bentoml", "serve", service_target(name), "--host", host,
                              "--port", str(port)])


@app.command()
def index(
    case: Annotated[str, typer.Argument(help="a case study with an incremental index (e.g. visual_search)")],
    add: Annotated[Path, typer.Option("--add", help="a folder of new items to add to the served index")],
    scale: ScaleOpt = None,
    seed: SeedOpt = None,
    source: SourceOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Add new items to a case's served index without a full rebuild (the champion gains them).

    The world options pick whose champion gains them, as for `casebook report`.
    """
    from rich.console import Console

    from pipelines import cases
    from pipelines.core.console import route_logs
    from pipelines.core.flowset import open_run
    from pipelines.core.settings import apply_privacy_defaults

    apply_privacy_defaults()
    spec = cases.spec(_names(case, allow_all=False)[0])
    if spec.add_to_index is None:
        _fail(f"{spec.name} has no incremental index; cases with one: "
              f"{', '.join(s.name for s in cases.specs() if s.add_to_index) or 'none'}")
    log = route_logs(verbose)
    try:
        run = open_run(spec, scale=scale.value if scale else None, seed=seed, source=source.value if source else None)
        from pipelines.core import worlds

        with worlds.living_in(run.paths):
            result = spec.add_to_index(run, add)
    except _user_errors() as exc:
        _fail(f"{spec.name}: {exc}\n(the tools' full log: {log})")
    Console().print_json(json.dumps(result, default=str))


class ReviewAction(StrEnum):
    list = "list"
    label = "label"
    export = "export"


@app.command()
def review(
    case: Annotated[str, typer.Argument(help="a case study with a human review queue (e.g. harmful_content)")],
    action: Annotated[ReviewAction, typer.Argument(help="list the queue, label an item, or export everything")],
    args: Annotated[list[str] | None, typer.Argument(help="label: ITEM_ID CLASS=0|1 ...; export: PATH (.csv or "
                                                      ".parquet)")] = None,
    status: Annotated[str, typer.Option(help="list: pending, labeled or all")] = "pending",
    limit: Annotated[int, typer.Option(min=1, help="list: at most this many items")] = 20,
    scale: ScaleOpt = None,
    seed: SeedOpt = None,
    source: SourceOpt = None,
) -> None:
    """A case's human review queue: list items, label one (the next training run reads it), export all."""
    from rich.console import Console

    from pipelines import cases
    from pipelines.core.flowset import open_run
    from pipelines.core.review import ReviewQueue

    spec = cases.spec(_names(case, allow_all=False)[0])
    if not spec.review_queue:
        _fail(f"{spec.name} has no review queue; cases with one: "
              f"{', '.join(s.name for s in cases.specs() if s.review_queue) or 'none'}")
    args = args or []
    try:
        run = open_run(spec, scale=scale.value if scale else None, seed=seed, source=source.value if source else None)
        queue = ReviewQueue.of(run.paths, spec.name)
        console = Console()
        if action is ReviewAction.list:
            items = queue.items(status, limit)
            for item in items:
                top = ", ".join(f"{c} {p:.3f}" for c, p in sorted(item["scores"].items(), key=lambda kv: -kv[1])[:3])
                labels = f" labels {item['labels']}" if item["labels"] else ""
                console.print(f"{item['item_id']}  {item['reason']}  [{top}]{labels}  "
                              f"{str(item['payload'].get('text', ''))[:70]!r}", highlight=False)
            console.print(f"{len(items)} {status} item(s) in {queue.path}", highlight=False)
        elif action is ReviewAction.label:
            if len(args) < 2 or not args[0].isdigit():
                raise ValueError("label takes ITEM_ID CLASS=0|1 ..., e.g. `casebook review harmful_content label "
                                 "123 spam=1 hate=0`")
            pairs = [a.partition("=") for a in args[1:]]
            if any(not sep or v not in ("0", "1") for _, sep, v in pairs):
                raise ValueError(f"labels are CLASS=0 or CLASS=1, got {' '.join(args[1:])}")
            item = queue.label(int(args[0]), {k: int(v) for k, _, v in pairs})
            console.print(f"labeled {item['item_id']}: {item['labels']} (the next `casebook run {spec.name}` trains "
                          f"on it)", highlight=False)
        else:
            if len(args) != 1:
                raise ValueError("export takes one PATH (.csv or .parquet)")
            console.print(f"wrote {queue.export(Path(args[0]))}", highlight=False)
    except _user_errors() as exc:
        _fail(f"{spec.name}: {exc}")


@app.command()
def generate(
    check: Annotated[bool, typer.Option(help="exit 1 if a committed file differs instead of writing it")] = False,
) -> None:
    """Write dvc.yaml and prefect.yaml from the case registry (never edit them by hand)."""
    from pipelines import cases
    from pipelines.core.generate import stale, write_all

    if check:
        differ = stale(cases.specs())
        if differ:
            _fail(f"{', '.join(differ)} differ from what the registry produces: run `casebook generate`")
        return
    for path in write_all(cases.specs()):
        typer.echo(f"wrote {path}")


if __name__ == "__main__":
    app()
