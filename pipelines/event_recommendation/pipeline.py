"""The event recommendation bodies of train, evaluate and monitor scoring; the core runs them.

Every logged impression gets its features from Feast's point-in-time join as of its time, the request-time
ones from the on-demand view (location and time of the impression as the request). Time decides the
split: the ranker (pointwise LightGBM on P(register)) trains on the past, early-stops on the next
``valid_days`` and is tested on the last ``test_days``. Events are always new: every test event was
created after training began, so the model knows it only by attributes, host, early registrations and
friends.

Evaluation re-ranks what each test user was shown (the setting of the book's and Kaggle's event
recommendation task): per user, the distinct events of their test impressions, relevant = the ones they
registered for; systems = the model, nearest upcoming (distance, then start), popularity (registrations
so far) and the oracle (the true probability).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipelines.core import feast
from pipelines.core.case import Report, Run, Trained
from pipelines.core.plots import systems_chart
from pipelines.event_recommendation import features as feats

SYSTEMS = ("model", "nearest_upcoming", "popularity", "oracle")
KEYS = ("user_id", "event_id", "host_id", "category", "event_timestamp", "user_lat", "user_lon", "request_s")


def feature_frame(run: Run, impressions: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Impressions with every feature of the service as of their time (the impression is the request)."""
    rows = impressions.merge(events[["event_id", "host_id", "category"]], on="event_id", how="left")
    rows["request_s"] = feats.unix_seconds(rows["event_timestamp"])
    return feast.historical(run.store, rows, run.spec.features.service)


def _split(frame: pd.DataFrame, valid_days: int, test_days: int) -> tuple[pd.DataFrame, ...]:
    end = frame["event_timestamp"].max().floor("D") + pd.Timedelta(days=1)
    test_start = end - pd.Timedelta(days=test_days)
    valid_start = test_start - pd.Timedelta(days=valid_days)
    if frame["event_timestamp"].min() >= valid_start:
        raise ValueError(f"the data span too few days for valid_days={valid_days} and test_days={test_days}")
    t = frame["event_timestamp"]
    return frame[t < valid_start], frame[(t >= valid_start) & (t < test_start)], frame[t >= test_start]


def train(run: Run) -> Trained:
    """PIT features for every impression, time split, the LightGBM ranker; the test frame is kept."""
    from pipelines.core.recsys.ranker import Ranker
    from pipelines.event_recommendation.model import EventRanker

    p = run.params
    events = run.validated("events")
    frame = feature_frame(run, run.validated("impressions"), events)
    tr, va, te = _split(frame, p.split.valid_days, p.split.test_days)
    ranker = Ranker(feats.NUMERIC + feats.CATEGORICAL, feats.CATEGORICAL, objective="binary",
                    params=dict(p.ranker.lightgbm), seed=p.seed).fit(tr, va, label="registered")
    as_of = frame["event_timestamp"].max()
    lineage = {"feature_service": run.spec.features.service, "world": run.world.id,
               "batches": run.batches("impressions"),
               "test_window": [str(te["event_timestamp"].min()), str(te["event_timestamp"].max())],
               "rows": {"train": len(tr), "valid": len(va), "test": len(te),
                        "train_registrations": int(tr["registered"].sum())},
               "params": p.model_dump(mode="json")}
    return Trained(EventRanker(ranker, as_of), lineage, artifacts={"test_set": te})


def system_scores(test: pd.DataFrame, model: Any) -> dict[str, np.ndarray]:
    """Every system's score per test impression (higher ranks first)."""
    scores = {"model": model.ranker.predict(test),
              # nearest first; among equally near, the sooner (a metre outweighs any start time)
              "nearest_upcoming": -(test["distance_km"].to_numpy() * 1e6 + test["hours_until_start"].to_numpy()),
              "popularity": test["event_registrations"].fillna(0).to_numpy() + 1e-3 * test[
                  "event_register_rate"].fillna(0).to_numpy()}
    if "p_register" in test:
        scores["oracle"] = test["p_register"].to_numpy()
    return scores


def ranking_metrics(test: pd.DataFrame, scores: dict[str, np.ndarray], k: int) -> dict[str, dict[str, float]]:
    """mAP/nDCG/recall@k of each system re-ranking each user's distinct shown events (first showing)."""
    from pipelines.core.ranking import ranking_report

    first = ~test.duplicated(["user_id", "event_id"], keep="first").to_numpy()
    base = test.loc[first, ["user_id", "event_id"]].reset_index(drop=True)
    got = test.groupby(["user_id", "event_id"])["registered"].max()
    base["registered"] = got.loc[pd.MultiIndex.from_frame(base)].to_numpy()
    relevant = {int(u): g["event_id"].tolist() for u, g in base[base["registered"] == 1].groupby("user_id")}
    out = {}
    for name, s in scores.items():
        ranked = base.assign(score=s[first]).sort_values(["user_id", "score"], ascending=[True, False], kind="stable")
        recommended = {int(u): g.tolist() for u, g in ranked.groupby("user_id")["event_id"]}
        report = ranking_report(recommended, relevant, k)
        out[name] = {key.replace("@k", f"@{k}"): v for key, v in report.items() if key not in ("coverage", "diversity")}
    return out


def evaluate(run: Run, model: Any) -> Report:
    """Ranking metrics per system, calibration of P(register), the lift over nearest upcoming."""
    from pipelines.core.metrics import binary_report, calibration_table

    k = run.params.k
    test = pd.read_parquet(run.work("artifacts") / "test_set.parquet")
    scores = system_scores(test, model)
    systems = ranking_metrics(test, scores, k)
    y, pred = test["registered"].to_numpy(), scores["model"]
    cal = calibration_table(y, pred)
    out: dict[str, Any] = {"model": {**systems["model"], **binary_report(y, pred)},
                           "baseline": systems["nearest_upcoming"], "systems": systems,
                           "calibration": {"mean_predicted": float(pred.mean()), "observed_rate": float(y.mean()),
                                           "relative_error": float(pred.mean() / y.mean() - 1),
                                           "buckets": cal.to_dict("records")},
                           "coverage": {"test users": int(systems["model"]["users"]),
                                        "users shown events": int(test["user_id"].nunique()),
                                        "events": int(test["event_id"].nunique()), "impressions": len(test),
                                        "registrations": int(y.sum())},
                           "position_ctr": test.groupby("position")["registered"].mean().round(4).to_dict()}
    headline = (f"ndcg@{k}", f"map@{k}", f"recall@{k}")
    base = systems["nearest_upcoming"]
    out["lift_over_nearest_upcoming"] = {m: systems["model"][m] / base[m] - 1 for m in headline if base[m] > 0}
    if "oracle" in systems:
        o = systems["oracle"]
        out["gap_to_oracle"] = {m: 1 - systems["model"][m] / o[m] for m in headline if o[m] > 0}
    fig, rows = systems_chart(systems, [s for s in SYSTEMS if s in systems], headline,
                              f"{run.case}: test window, {out['coverage']['test users']:,} users")
    reference = _monitored(test, pred)
    return Report(out, plots={"systems": fig}, plot_data={"systems": rows}, reference=reference)


def _monitored(frame: pd.DataFrame, prediction: np.ndarray) -> pd.DataFrame:
    cols = [c for c in (*feats.FEATURES, "registered") if c in frame]
    return frame[cols].assign(prediction=prediction).reset_index(drop=True)


def score_window(run: Run, model: Any, window: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The next window's impressions, with point-in-time features, scored by the champion.

    The feature tables were built from the validated history; the window's own events are not in them
    yet, so their profile comes from the window (what the platform logs when an event is created).
    """
    events = pd.concat([run.validated("events"), window["events"]]).drop_duplicates("event_id", keep="last")
    frame = feature_frame(run, window["impressions"], events)
    profile = feats.event_profile_table(events).set_index("event_id")
    missing = frame["price"].isna()
    if missing.any():  # events created after the last features run: static attributes from the window
        from pipelines.event_recommendation.model import request_features

        fill = profile.loc[frame.loc[missing, "event_id"]].reset_index()
        for c in ("price", "capacity", "start_slot"):
            frame.loc[missing, c] = fill[c].to_numpy()
        inputs = fill.assign(**{c: frame.loc[missing, c].to_numpy() for c in (
            "user_lat", "user_lon", "request_s", "user_mean_log_price", *feats.SLOT_COLUMNS)})
        computed = request_features(run.store, inputs)
        for c in computed.columns:
            frame.loc[missing, c] = computed[c].to_numpy()
    return _monitored(frame, model.ranker.predict(frame))


def smoke_test(run: Run, url: str) -> dict[str, Any]:
    """Recommend for an active known user and for a user the platform has never seen (at a city centre)."""
    import httpx

    imps = run.validated("impressions")
    known = int(imps["user_id"].value_counts().index[0])
    k = min(5, run.params.serving.max_k)
    out: dict[str, Any] = {}
    homes = run.validated("homes")
    home = homes[homes["user_id"] == known].iloc[0]
    for name, body in {"known": {"user_id": known, "k": k},
                       "cold_start": {"user_id": 2**62, "k": k, "lat": float(home["home_lat"]),
                                      "lon": float(home["home_lon"])}}.items():
        r = httpx.post(f"{url}/recommend", json=body, timeout=30)
        r.raise_for_status()
        events = r.json()["events"]
        if not events:
            raise RuntimeError(f"the event_recommendation service recommended nothing to the {name} user: "
                               f"{r.text[:200]}")
        out[name] = events[:3]
    return out
