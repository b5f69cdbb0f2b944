"""The ad click flow set: the book's seven steps as Prefect tasks composed into one flow.

Every step reads its inputs from and writes its outputs to ``Paths`` so any step can run alone
(``casebook run ad_click --step train``) and a rerun after a crash resumes at the step that failed.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipelines.ad_click import features as feats
from pipelines.ad_click.schema import ADS, IMPRESSIONS, TABLES, USERS
from pipelines.ad_click.source import simulate
from pipelines.core import steps as core
from pipelines.core.flow import background_runner, record_outputs, run_step, step, submit_step
from pipelines.core.io import read_json, write_json, write_parquet
from pipelines.core.settings import Paths
from pipelines.core.steps import window_batch_id
from pipelines.world.population import EPOCH, SCALES

CASE = "ad_click"


# -- ingest ---------------------------------------------------------------------------------------------
@step(CASE, "ingest", reads=lambda paths: [], retries=2)
def ingest(scale: str, seed: int, start_day: int, n_days: int, drift: float = 0.0) -> str:
    """Pull one window from the source into ``raw/``; the batch id names the window."""
    batch = window_batch_id(start_day, n_days)
    core.land(CASE, batch, simulate(scale, seed, start_day, n_days, drift))
    return batch


# -- validate -------------------------------------------------------------------------------------------
@step(CASE, "validate", reads=lambda paths: [paths.raw(CASE)])
def validate(batch: str) -> dict[str, str]:
    """Gate each table of the batch; the first failure quarantines it and stops the flow with a summary."""
    return core.validate_batch(CASE, batch, TABLES)


# -- features -------------------------------------------------------------------------------------------
@step(CASE, "features", reads=lambda paths: [paths.validated(CASE)])
def features(ctr_prior: float) -> dict[str, Any]:
    """Feature tables from all validated data and ``feast apply``; returns how far the online store can go."""
    impressions = core.validated(CASE, IMPRESSIONS)
    tables = {"ad_profile": feats.ad_profile_table(core.validated(CASE, ADS)),
              **feats.ctr_tables(impressions, ctr_prior)}
    return core.publish_features(CASE, tables, core.validated(CASE, USERS), impressions["event_timestamp"].max())


@step(CASE, "materialize", reads=lambda paths: [paths.features(CASE), paths.features("shared")])
def materialize(end: str) -> dict[str, Any]:
    """Load the latest feature values into the online store for serving."""
    return core.materialize(CASE, feats.VIEWS, end)


# -- train ----------------------------------------------------------------------------------------------
@step(CASE, "train", reads=lambda paths: [paths.features(CASE), paths.features("shared")])
def train(params: dict[str, Any]) -> str:
    """PIT training set from Feast, time split, baseline + DeepFM; DeepFM goes to the registry as challenger."""
    from pipelines.ad_click import model as m
    from pipelines.core import feast, registry
    from pipelines.core.metrics import binary_report

    paths = Paths.from_env()
    impressions = core.validated(CASE, IMPRESSIONS)
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
    return core.deploy(CASE, metric="ne", lower_is_better=True, build=build,
                       smoke_test=_smoke_test if smoke_test else None)


def _smoke_test(url: str) -> dict[str, Any]:
    """Rank real candidates for a real user."""
    import httpx

    users = core.validated(CASE, USERS)["user_id"].head(1).tolist()
    ads = core.validated(CASE, ADS)["ad_id"].head(20).tolist()
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
                          tags=[f"window:{window_batch_id(start_day, n_days)}", f"drift:{drift}", f"model:{tag}"])
    out = {"window": window_batch_id(start_day, n_days), "drift": drift, "model_tag": tag, **result.to_dict()}
    write_json(out, paths.monitoring(CASE) / "latest.json")
    return out


# -- the flow -------------------------------------------------------------------------------------------
def _steps(p: dict[str, Any]) -> core.CaseSteps:
    """Each step's task with this run's parameters bound."""
    mon = p["monitor"]
    return core.CaseSteps(
        ingest=lambda start, days, drift: run_step(ingest, CASE, "ingest", scale=p["scale"], seed=p["seed"],
                                                   start_day=start, n_days=days, drift=drift),
        validate=lambda batch: run_step(validate, CASE, "validate", batch=batch),
        features=lambda: run_step(features, CASE, "features", ctr_prior=p["ctr_prior"]),
        materialize=lambda end: submit_step(materialize, CASE, "materialize", end=end),
        train=lambda: run_step(train, CASE, "train", params=p),
        evaluate=lambda: run_step(evaluate, CASE, "evaluate"),
        deploy=lambda: run_step(deploy, CASE, "deploy", **p["deploy"]),
        # Monitoring always looks at fresh traffic: never served from the cache.
        monitor=lambda start, days, drift: monitor.with_options(refresh_cache=True)(
            scale=p["scale"], seed=p["seed"], start_day=start, n_days=days, drift=drift,
            thresholds=mon["thresholds"]),
    )


def ad_click_flow(steps: list[str] | None = None, scale: str | None = None, seed: int | None = None,
                  drift: float | None = None) -> dict[str, Any]:
    """Run the chosen steps (all by default) in order; returns each step's result."""
    from prefect import flow

    @flow(name=CASE, log_prints=True, validate_parameters=False, task_runner=background_runner())
    def run(steps: list[str], p: dict[str, Any], drift: float) -> dict[str, Any]:
        return core.drive(_steps(p), steps, SCALES[p["scale"]].days, p["monitor"], drift)

    p = core.case_params(CASE, scale, seed)
    return run(core.chosen_steps(steps), p, p["monitor"]["drift"] if drift is None else drift)
