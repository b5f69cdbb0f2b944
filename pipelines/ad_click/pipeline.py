"""The ad click bodies of train, evaluate and monitor scoring; the core runs them as the flow's steps.

Train reads point-in-time features for every validated impression, splits by time, and fits the
logistic baseline and DeepFM; evaluate scores any model (the challenger, then the serving champion)
on the held-out last days beside the baseline and the oracle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipelines.core import feast
from pipelines.core.case import Report, Run, Trained
from pipelines.world.population import EPOCH

LABELS = ("impression_id", "user_id", "ad_id", "event_timestamp", "clicked")


def _split(frame: pd.DataFrame, valid_days: int, test_days: int) -> tuple[pd.DataFrame, ...]:
    """Train on the past, validate on the next day(s), test on the last days (whole days from the end)."""
    day = (frame["event_timestamp"] - EPOCH).dt.days
    test_start = int(day.max()) + 1 - test_days
    valid_start = test_start - valid_days
    if int(day.min()) >= valid_start:
        raise ValueError(f"the data span {int(day.max()) - int(day.min()) + 1} days, too few for "
                         f"valid_days={valid_days} and test_days={test_days} plus training days")
    return frame[day < valid_start], frame[(day >= valid_start) & (day < test_start)], frame[day >= test_start]


def train(run: Run) -> Trained:
    """PIT training set from Feast, time split, baseline + DeepFM; the test set keeps the baseline's scores."""
    from pipelines.ad_click import model as m

    p = run.params
    frame = feast.historical(run.store, run.validated("impressions"), run.spec.features.service)
    tr, va, te = _split(frame, p.split.valid_days, p.split.test_days)
    baseline = m.train_logistic(tr, va, p.ctr_prior, p.logistic.c)
    model = m.train_deepfm(tr, va, p.ctr_prior, p.deepfm.model_dump(), p.seed)
    lineage = {"feature_service": run.spec.features.service, "batches": run.batches("impressions"),
               "rows": {"train": len(tr), "valid": len(va), "test": len(te)},
               "test_window": [str(te["event_timestamp"].min()), str(te["event_timestamp"].max())],
               "world": run.world.id, "params": p.model_dump(mode="json")}
    return Trained(model, lineage, artifacts={"test_set": te.assign(baseline=baseline.predict(te))})


def evaluate(run: Run, model: Any) -> Report:
    """NE, log loss, AUC and calibration of model, baseline and oracle on the test window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.core.metrics import binary_report, calibration_table

    test = pd.read_parquet(run.work("artifacts") / "test_set.parquet")
    y = test["clicked"].to_numpy()
    scores = {"baseline": test["baseline"].to_numpy(), "model": model.predict(test)}
    if "p_click" in test:
        scores["oracle"] = test["p_click"].to_numpy()
    out: dict[str, Any] = {k: binary_report(y, v) for k, v in scores.items()}
    out["coverage"] = {"impressions": len(test), "clicks": int(y.sum()), "users": int(test["user_id"].nunique()),
                       "ads": int(test["ad_id"].nunique())}
    calibration = {k: calibration_table(y, v) for k, v in scores.items()}
    out["calibration"] = {k: c.to_dict("records") for k, c in calibration.items()}
    if "oracle" in out:
        out["model_ne_gap_to_oracle"] = out["model"]["ne"] / out["oracle"]["ne"] - 1
    fig, ax = plt.subplots(figsize=(5, 5))
    for k, cal in calibration.items():
        ax.plot(cal["predicted"], cal["observed"], marker="o", label=f"{k} (NE {out[k]['ne']:.3f})")
    top = float(max(max(v.max() for v in scores.values()), 0.05))
    ax.plot([0, top], [0, top], "k--", lw=0.8)
    ax.set(xlabel="predicted CTR", ylabel="observed CTR", title="ad_click calibration (test window)")
    ax.legend()
    rows = [{"model": k, **r} for k in scores for r in out["calibration"][k]]
    reference = test.drop(columns=["p_click", "baseline"], errors="ignore").assign(prediction=scores["model"])
    return Report(out, plots={"calibration": fig}, plot_data={"calibration": rows}, reference=reference)


def score_window(run: Run, model: Any, window: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The window's impressions with their point-in-time features and the model's click probability."""
    current = feast.historical(run.store, window["impressions"], run.spec.features.service)
    return current.assign(prediction=model.predict(current))


def smoke_test(run: Run, url: str) -> dict[str, Any]:
    """Rank real candidates for a known user and for a user the platform has never seen."""
    import httpx

    n = min(20, run.params.serving.max_candidates)
    ads = run.validated("ads")["ad_id"].head(n).tolist()
    known = int(run.validated("users")["user_id"].iloc[0])
    out: dict[str, Any] = {}
    for name, user in (("known", known), ("cold_start", 2**62)):
        r = httpx.post(f"{url}/rank", json={"user_id": user, "candidate_ad_ids": ads, "k": min(5, n)}, timeout=30)
        r.raise_for_status()
        top = r.json()["ads"]
        if not top or not np.isfinite([a["p_click"] for a in top]).all():
            raise RuntimeError(f"the ad_click service answered {name} user {user} with no usable ads: {r.text[:200]}")
        out[name] = top[:3]
    out["status"] = 200
    return out
