"""The bodies of the steps every case study shares: land a batch, gate it, read validated data, deploy.

A case's ``flows.py`` keeps its seven named Prefect tasks (so the story reads in one file) and calls
these for the mechanics that do not depend on the case: where a batch lands, how it is validated,
how the validated history is read back, and how a challenger becomes the served champion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.core.flow import STEPS, record_outputs
from pipelines.core.io import read_json, write_json, write_parquet
from pipelines.core.settings import Paths, load_params
from pipelines.core.validation import TableSchema
from pipelines.world.population import SCALES


def window_batch_id(start_day: int, n_days: int) -> str:
    """A window's batch name, e.g. ``d000-d014``: sortable, and the same for a rerun of the same window."""
    return f"d{start_day:03d}-d{start_day + n_days:03d}"


def land(case: str, batch: str, tables: dict[str, pd.DataFrame]) -> list[Path]:
    """Write one batch of every table to ``raw/<table>/<batch>.parquet`` and record the ingest step."""
    paths = Paths.from_env()
    written = [write_parquet(df, paths.raw(case) / name / f"{batch}.parquet") for name, df in tables.items()]
    record_outputs(paths, case, "ingest", written)
    return written


def validate_batch(case: str, batch: str, schemas: Iterable[TableSchema]) -> dict[str, str]:
    """Gate each table of the batch; the first failure quarantines it and raises ``ValidationFailed``."""
    from pipelines.core.validation import gate

    paths = Paths.from_env()
    out = {s.name: str(gate(paths.raw(case) / s.name / f"{batch}.parquet", s, paths.validated(case),
                            paths.quarantine(case))) for s in schemas}
    record_outputs(paths, case, "validate", [Path(p) for p in out.values()])
    return out


def validated(case: str, schema: TableSchema, paths: Paths | None = None) -> pd.DataFrame:
    """Every validated batch of a table, later batches winning on the table's key."""
    paths = paths or Paths.from_env()
    files = sorted((paths.validated(case) / schema.name).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no validated '{schema.name}' data under {paths.validated(case)}: "
                                f"run `casebook run {case} --step ingest --step validate` first")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return frame.drop_duplicates(list(schema.key), keep="last").reset_index(drop=True)


def publish_features(case: str, tables: dict[str, pd.DataFrame], users: pd.DataFrame,
                     last_event: pd.Timestamp) -> dict[str, Any]:
    """Write a case's feature tables and the shared user profile, then ``feast apply`` the case's views.

    Returns the rows per table and ``online_until``: the day after the last event, up to which
    ``materialize`` loads the online store.
    """
    from pipelines.core import feast
    from pipelines.core.features import write_user_profile

    paths = Paths.from_env()
    written = [write_user_profile(users, paths, case)]
    written += [write_parquet(df, paths.features(case) / f"{name}.parquet") for name, df in tables.items()]
    feast.apply(case, feast.store(paths))
    record_outputs(paths, case, "features", written)
    end = last_event.ceil("D") + pd.Timedelta(days=1)
    return {"rows": {name: len(df) for name, df in tables.items()}, "online_until": end.isoformat()}


def materialize(case: str, views: list[str], end: str) -> dict[str, Any]:
    """Load each view's latest value per entity up to ``end`` (ISO time) into the online store."""
    import time
    from datetime import datetime

    from pipelines.core import feast

    paths = Paths.from_env()
    t0 = time.perf_counter()
    feast.materialize(feast.store(paths), views, datetime.fromisoformat(end))
    record_outputs(paths, case, "materialize", [paths.feast / "online.db"])
    return {"views": views, "until": end, "seconds": round(time.perf_counter() - t0, 1)}


def deploy(case: str, *, metric: str, lower_is_better: bool, build: bool,
           smoke_test: Callable[[str], dict[str, Any]] | None) -> dict[str, Any]:
    """Promote only a better challenger, build the Bento, and prove the service answers a real request.

    ``smoke_test`` gets the base URL of the freshly started service and returns what it saw.
    """
    from pipelines.core import registry, serving

    paths = Paths.from_env()
    challenger = read_json(paths.work(case) / "challenger.json")
    promoted, reason = registry.promote(case, challenger["tag"], metric=metric, lower_is_better=lower_is_better)
    result: dict[str, Any] = {"challenger": challenger["tag"], "promoted": promoted, "reason": reason,
                              "champion": registry.champion(case)}
    if build:
        result["bento"] = serving.build_bento(case)
    if smoke_test is not None:
        with serving.running_service(case) as url:
            result["smoke_test"] = smoke_test(url)
    write_json(result, paths.work(case) / "deploy.json")
    record_outputs(paths, case, "deploy", [paths.work(case) / "deploy.json"])
    return result


def case_params(case: str, scale: str | None, seed: int | None) -> dict[str, Any]:
    """The case's section of params.yaml with the run's overrides, checked before any work starts."""
    p = dict(load_params(case))
    if scale is not None:
        p["scale"] = scale
    if seed is not None:
        p["seed"] = seed
    if p.get("scale") not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got {p.get('scale')!r}")
    return p


def chosen_steps(steps: list[str] | None) -> list[str]:
    """The steps to run, in the flow's order; unknown names are an error, not a silent skip."""
    chosen = list(steps or STEPS)
    bad = [s for s in chosen if s not in STEPS]
    if bad:
        raise ValueError(f"unknown step(s) {bad}; choose from {list(STEPS)}")
    return chosen


@dataclass(frozen=True)
class CaseSteps:
    """How one case calls each of its steps (its Prefect tasks with the run's parameters bound).

    ``drive`` runs them in the flow set's order, so every case resumes, overlaps materialization with
    training and retrains on a drift alarm the same way.
    """

    ingest: Callable[[int, int, float], str]  # (start_day, n_days, drift) -> batch id
    validate: Callable[[str], Any]
    features: Callable[[], dict[str, Any]]  # returns "online_until" among its results
    materialize: Callable[[str], Any]  # submits in the background: returns a future
    train: Callable[[], Any]
    evaluate: Callable[[], Any]
    deploy: Callable[[], Any]
    monitor: Callable[[int, int, float], dict[str, Any]]  # (start_day, n_days, drift) -> drift result


def drive(s: CaseSteps, steps: list[str], history_days: int, monitor: dict[str, Any], drift: float
          ) -> dict[str, Any]:
    """Run the chosen steps in order over the history window ``[0, history_days)``; returns each result."""
    out: dict[str, Any] = {}
    batch = window_batch_id(0, history_days)
    if "ingest" in steps:
        out["ingest"] = batch = s.ingest(0, history_days, 0.0)
    if "validate" in steps:
        out["validate"] = s.validate(batch)
    online = None
    if "features" in steps:
        out["features"] = s.features()
        # Only serving reads the online store: fill it in the background while the model trains.
        online = s.materialize(out["features"]["online_until"])
    if "train" in steps:
        out["train"] = s.train()
    if "evaluate" in steps:
        out["evaluate"] = s.evaluate()
    if online is not None:
        out["materialize"] = online.result()
    if "deploy" in steps:
        out["deploy"] = s.deploy()
    if "monitor" in steps:
        out["monitor"] = s.monitor(history_days, monitor["days"], drift)
        if out["monitor"]["alarm"] and monitor["retrain_on_alarm"]:
            print(f"drift alarm (share {out['monitor']['drift_share']:.2f}): retraining on the new window")
            out["retrain"] = retrain(s, history_days, monitor["days"], drift)
    return out


def retrain(s: CaseSteps, start_day: int, n_days: int, drift: float) -> dict[str, Any]:
    """Continual learning: land the new window, rebuild features, train, evaluate, deploy if better."""
    s.validate(s.ingest(start_day, n_days, drift))
    online = s.materialize(s.features()["online_until"])
    s.train()
    online.result()
    return {"evaluate": s.evaluate(), "deploy": s.deploy()}
