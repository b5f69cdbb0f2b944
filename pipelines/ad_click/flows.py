"""The ad click flow set: the book's seven steps as Prefect tasks composed into one flow.

Every step reads its inputs from and writes its outputs to ``Paths`` so any step can run alone
(``casebook run ad_click --step train``) and a rerun after a crash resumes at the step that failed.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.ad_click import features as feats
from pipelines.ad_click.schema import TABLES
from pipelines.ad_click.source import batch_id, simulate
from pipelines.core.flow import STEPS, record_outputs, run_step, step
from pipelines.core.io import read_json, write_json, write_parquet
from pipelines.core.settings import Paths, load_params
from pipelines.world.population import EPOCH, SCALES

CASE = "ad_click"


def _history(p: dict[str, Any]) -> tuple[int, int]:
    return 0, SCALES[p["scale"]].days


def _validated(paths: Paths, table: str) -> pd.DataFrame:
    """Every validated batch of a table, later batches winning on the table's key."""
    files = sorted((paths.validated(CASE) / table).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no validated '{table}' data under {paths.validated(CASE)}: run the validate step")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    key = next(s.key for s in TABLES if s.name == table)
    return frame.drop_duplicates(list(key), keep="last").reset_index(drop=True)


# -- ingest ---------------------------------------------------------------------------------------------
@step(CASE, "ingest", reads=lambda paths: [], retries=2)
def ingest(scale: str, seed: int, start_day: int, n_days: int, drift: float = 0.0) -> str:
    """Pull one window from the source into ``raw/``; the batch id names the window."""
    paths, batch = Paths.from_env(), batch_id(start_day, n_days)
    written = [write_parquet(df, paths.raw(CASE) / name / f"{batch}.parquet")
               for name, df in simulate(scale, seed, start_day, n_days, drift).items()]
    record_outputs(paths, CASE, "ingest", written)
    return batch


# -- validate -------------------------------------------------------------------------------------------
@step(CASE, "validate", reads=lambda paths: [paths.raw(CASE)])
def validate(batch: str) -> dict[str, str]:
    """Gate each table of the batch; the first failure quarantines it and stops the flow with a summary."""
    from pipelines.core.validation import gate

    paths = Paths.from_env()
    out = {s.name: str(gate(paths.raw(CASE) / s.name / f"{batch}.parquet", s, paths.validated(CASE),
                            paths.quarantine(CASE))) for s in TABLES}
    record_outputs(paths, CASE, "validate", [Path(p) for p in out.values()])
    return out


# -- features -------------------------------------------------------------------------------------------
@step(CASE, "features", reads=lambda paths: [paths.validated(CASE)])
def features(ctr_prior: float) -> dict[str, int]:
    """Feature tables from all validated data, ``feast apply``, then materialize to the online store."""
    from pipelines.core import feast
    from pipelines.core.features import user_profile_table

    paths = Paths.from_env()
    impressions = _validated(paths, "impressions")
    tables = {"ad_profile": feats.ad_profile_table(_validated(paths, "ads")),
              **feats.ctr_tables(impressions, ctr_prior)}
    written = [write_parquet(user_profile_table(_validated(paths, "users")),
                             paths.features("shared") / "user_profile.parquet")]
    written += [write_parquet(df, paths.features(CASE) / f"{name}.parquet") for name, df in tables.items()]
    fs = feast.store(paths)
    feast.apply(CASE, fs)
    end = impressions["event_timestamp"].max().ceil("D") + timedelta(days=1)
    feast.materialize(fs, feats.VIEWS, end.to_pydatetime())
    record_outputs(paths, CASE, "features", written)
    return {name: len(df) for name, df in tables.items()}


# -- train ----------------------------------------------------------------------------------------------
@step(CASE, "train", reads=lambda paths: [paths.features(CASE), paths.features("shared")])
def train(params: dict[str, Any]) -> str:
    """PIT training set from Feast, time split, baseline + DeepFM; DeepFM goes to the registry as challenger."""
    from pipelines.ad_click import model as m
    from pipelines.core import feast, registry
    from pipelines.core.metrics import binary_report

    paths = Paths.from_env()
    impressions = _validated(paths, "impressions")
    fs = feast.store(paths)
    frame = feast.historical(fs, impressions, feats.SERVICE)
    day = (frame["event_timestamp"] - EPOCH).dt.days
    last = int(day.max()) + 1
    test_start = last - params["split"]["test_days"]
    valid_start = test_start - params["split"]["valid_days"]
    tr, va, te = frame[day < valid_start], frame[(day >= valid_start) & (day < test_start)], frame[day >= test_start]
    prior = params["ctr_prior"]
    baseline = m.train_logistic(tr, va, prior, params["logistic"]["c"])
    model = m.train_deepfm(tr, va, prior, params["deepfm"], params["seed"])
    preds = te[["impression_id", "user_id", "ad_id", "event_timestamp", "clicked"]].assign(
        baseline=baseline.predict(te), model=model.predict(te))
    if "p_click" in te:
        preds["oracle"] = te["p_click"].to_numpy()
    y = preds["clicked"].to_numpy()
    metrics = {k: binary_report(y, preds[k].to_numpy()) for k in ("baseline", "model", "oracle") if k in preds}
    lineage = {"feature_service": feats.SERVICE, "batches": sorted(p.stem for p in
               (paths.validated(CASE) / "impressions").glob("*.parquet")),
               "rows": {"train": len(tr), "valid": len(va), "test": len(te)},
               "test_window": [str(te["event_timestamp"].min()), str(te["event_timestamp"].max())],
               "params": params}
    write_parquet(preds, paths.work(CASE) / "test_predictions.parquet")
    write_parquet(te.drop(columns=["p_click"], errors="ignore").assign(prediction=preds["model"].to_numpy()),
                  paths.work(CASE) / "reference.parquet")
    tag = registry.save(CASE, model, metrics=metrics, lineage=lineage)
    write_json({"tag": tag, "metrics": metrics, "lineage": lineage}, paths.work(CASE) / "challenger.json")
    record_outputs(paths, CASE, "train", [paths.work(CASE) / "challenger.json"])
    return tag


# -- evaluate -------------------------------------------------------------------------------------------
@step(CASE, "evaluate", reads=lambda paths: [paths.work(CASE) / "test_predictions.parquet"])
def evaluate() -> dict[str, Any]:
    """NE, log loss, AUC and calibration for baseline, model and oracle -> metrics JSON and plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.core.metrics import binary_report, calibration_table

    paths = Paths.from_env()
    preds = pd.read_parquet(paths.work(CASE) / "test_predictions.parquet")
    y = preds["clicked"].to_numpy()
    names = [k for k in ("baseline", "model", "oracle") if k in preds]
    challenger = read_json(paths.work(CASE) / "challenger.json")
    out: dict[str, Any] = {k: binary_report(y, preds[k].to_numpy()) for k in names}
    out["coverage"] = {"impressions": len(preds), "clicks": int(y.sum()), "users": int(preds["user_id"].nunique()),
                       "ads": int(preds["ad_id"].nunique())}
    out["model_tag"] = challenger["tag"]
    out["calibration"] = {k: calibration_table(y, preds[k].to_numpy()).to_dict("records") for k in names}
    if "oracle" in out:
        out["model_ne_gap_to_oracle"] = out["model"]["ne"] / out["oracle"]["ne"] - 1
    fig, ax = plt.subplots(figsize=(5, 5))
    for k in names:
        cal = calibration_table(y, preds[k].to_numpy())
        ax.plot(cal["predicted"], cal["observed"], marker="o", label=f"{k} (NE {out[k]['ne']:.3f})")
    top = float(max(preds[names].to_numpy().max(), 0.05))
    ax.plot([0, top], [0, top], "k--", lw=0.8)
    ax.set(xlabel="predicted CTR", ylabel="observed CTR", title="ad_click calibration (test window)")
    ax.legend()
    plot = paths.plots(CASE) / "calibration.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=100, bbox_inches="tight")
    plt.close(fig)
    cal_rows = [{"model": k, **r} for k in names for r in out["calibration"][k]]
    write_json(cal_rows, paths.plots(CASE) / "calibration.json")
    write_json(out, paths.metrics(CASE))
    record_outputs(paths, CASE, "evaluate", [paths.metrics(CASE), plot])
    return out


# -- deploy ---------------------------------------------------------------------------------------------
@step(CASE, "deploy", reads=lambda paths: [paths.work(CASE) / "challenger.json"])
def deploy(smoke_test: bool, build: bool) -> dict[str, Any]:
    """Promote only a better challenger, build the Bento, and prove the service answers a real request."""
    from pipelines.core import registry, serving

    paths = Paths.from_env()
    challenger = read_json(paths.work(CASE) / "challenger.json")
    promoted, reason = registry.promote(CASE, challenger["tag"], metric="ne", lower_is_better=True)
    result: dict[str, Any] = {"challenger": challenger["tag"], "promoted": promoted, "reason": reason,
                              "champion": registry.champion(CASE)}
    if build:
        result["bento"] = serving.build_bento(CASE)
    if smoke_test:
        result["smoke_test"] = _smoke_test(paths)
    write_json(result, paths.work(CASE) / "deploy.json")
    record_outputs(paths, CASE, "deploy", [paths.work(CASE) / "deploy.json"])
    return result


def _smoke_test(paths: Paths) -> dict[str, Any]:
    """Start the service, rank real candidates for a real user, stop it."""
    import httpx

    from pipelines.core import serving

    users = _validated(paths, "users")["user_id"].head(1).tolist()
    ads = _validated(paths, "ads")["ad_id"].head(20).tolist()
    with serving.running_service(CASE) as url:
        r = httpx.post(f"{url}/rank", json={"user_id": users[0], "candidate_ad_ids": ads, "k": 5}, timeout=30)
    r.raise_for_status()
    return {"status": r.status_code, "top": r.json()["ads"][:3]}


# -- monitor --------------------------------------------------------------------------------------------
@step(CASE, "monitor", reads=lambda paths: [paths.work(CASE) / "reference.parquet"])
def monitor(scale: str, seed: int, start_day: int, n_days: int, drift: float, thresholds: dict[str, Any]) -> dict:
    """Score a new window of traffic with the champion and compare it with the test window in Evidently."""
    from pipelines.ad_click.model import CATEGORICAL, NUMERIC
    from pipelines.core import feast, registry
    from pipelines.core.monitoring import DriftThresholds, drift_report

    paths = Paths.from_env()
    window = simulate(scale, seed, start_day, n_days, drift)
    tag, model = registry.load_champion(CASE)
    current = feast.historical(feast.store(paths), window["impressions"], feats.SERVICE)
    current["prediction"] = model.predict(current)
    reference = pd.read_parquet(paths.work(CASE) / "reference.parquet")
    inputs_num = ["age", *NUMERIC]
    inputs_cat = [c for c in CATEGORICAL if c not in ("age_bucket", "ad_id", "campaign_id", "advertiser_id")]
    result = drift_report(CASE, reference, current, numerical=inputs_num, categorical=inputs_cat,
                          prediction="prediction", target="clicked",
                          thresholds=DriftThresholds.from_params(thresholds),
                          workspace=paths.evidently_workspace, html_dir=paths.monitoring(CASE),
                          tags=[f"window:{batch_id(start_day, n_days)}", f"drift:{drift}", f"model:{tag}"])
    out = {"window": batch_id(start_day, n_days), "drift": drift, "model_tag": tag, **result.to_dict()}
    write_json(out, paths.monitoring(CASE) / "latest.json")
    return out


# -- the flow -------------------------------------------------------------------------------------------
def _params(scale: str | None, seed: int | None) -> dict[str, Any]:
    p = dict(load_params(CASE))
    if scale is not None:
        p["scale"] = scale
    if seed is not None:
        p["seed"] = seed
    if p["scale"] not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {p['scale']!r}")
    return p


def ad_click_flow(steps: list[str] | None = None, scale: str | None = None, seed: int | None = None,
                  drift: float | None = None) -> dict[str, Any]:
    """Run the chosen steps (all by default) in order; returns each step's result."""
    from prefect import flow

    @flow(name=CASE, log_prints=True, validate_parameters=False)
    def run(steps: list[str], p: dict[str, Any], drift: float) -> dict[str, Any]:
        start, days = _history(p)
        out: dict[str, Any] = {}
        batch = batch_id(start, days)
        if "ingest" in steps:
            out["ingest"] = batch = run_step(ingest, CASE, "ingest", scale=p["scale"], seed=p["seed"],
                                             start_day=start, n_days=days)
        if "validate" in steps:
            out["validate"] = run_step(validate, CASE, "validate", batch=batch)
        if "features" in steps:
            out["features"] = run_step(features, CASE, "features", ctr_prior=p["ctr_prior"])
        if "train" in steps:
            out["train"] = run_step(train, CASE, "train", params=p)
        if "evaluate" in steps:
            out["evaluate"] = run_step(evaluate, CASE, "evaluate")
        if "deploy" in steps:
            out["deploy"] = run_step(deploy, CASE, "deploy", **p["deploy"])
        if "monitor" in steps:
            mon = p["monitor"]
            # Monitoring always looks at fresh traffic: never served from the cache.
            out["monitor"] = monitor.with_options(refresh_cache=True)(
                scale=p["scale"], seed=p["seed"], start_day=start + days, n_days=mon["days"], drift=drift,
                thresholds=mon["thresholds"])
            if out["monitor"]["alarm"] and mon["retrain_on_alarm"]:
                print(f"drift alarm (share {out['monitor']['drift_share']:.2f}): retraining on the new window")
                out["retrain"] = _retrain(p, start + days, mon["days"], drift)
        return out

    p = _params(scale, seed)
    chosen = list(steps or STEPS)
    bad = [s for s in chosen if s not in STEPS]
    if bad:
        raise ValueError(f"unknown step(s) {bad}; choose from {list(STEPS)}")
    return run(chosen, p, p["monitor"]["drift"] if drift is None else drift)


def _retrain(p: dict[str, Any], start_day: int, n_days: int, drift: float) -> dict[str, Any]:
    """Continual learning: land the new window, rebuild features, train, evaluate, deploy if better."""
    batch = run_step(ingest, CASE, "ingest", scale=p["scale"], seed=p["seed"], start_day=start_day,
                     n_days=n_days, drift=drift)
    run_step(validate, CASE, "validate", batch=batch)
    run_step(features, CASE, "features", ctr_prior=p["ctr_prior"])
    run_step(train, CASE, "train", params=p)
    return {"evaluate": run_step(evaluate, CASE, "evaluate"), "deploy": run_step(deploy, CASE, "deploy", **p["deploy"])}
