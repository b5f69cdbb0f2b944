"""Metrics and point-in-time feature transforms."""

import numpy as np
import pandas as pd
import pytest

from pipelines.core.features import rate_snapshots, smoothed_rate
from pipelines.core.metrics import binary_report, calibration_table, normalized_cross_entropy


def test_ne_is_one_for_the_background_rate_and_lower_for_signal() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.001, 0.2, 50_000)
    y = (rng.random(len(p)) < p).astype(int)
    assert normalized_cross_entropy(y, np.full(len(y), y.mean())) == pytest.approx(1.0)
    assert normalized_cross_entropy(y, p) < 0.95
    report = binary_report(y, p)
    assert report["roc_auc"] > 0.6
    assert report["observed_rate"] == pytest.approx(y.mean())


def test_calibration_table_compares_predicted_and_observed() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.3, 20_000)
    y = (rng.random(len(p)) < p).astype(int)
    cal = calibration_table(y, p, buckets=5)
    assert len(cal) == 5 and cal["n"].sum() == len(y)
    assert np.allclose(cal["predicted"], cal["observed"], atol=0.03)


def test_rate_snapshots_only_see_matured_labels() -> None:
    ts = pd.to_datetime(["2026-01-01 10:00", "2026-01-01 23:58", "2026-01-02 09:00"], utc=True)
    events = pd.DataFrame({"ad_id": [1, 1, 1], "event_timestamp": ts, "clicked": [1, 0, 1]})
    matured = events["event_timestamp"] + pd.Timedelta(minutes=10)
    snaps = rate_snapshots(events, ["ad_id"], "clicked", matured, "ad", prior=0.1, strength=10)
    # The 23:58 impression matures after midnight, so it counts from Jan 3, not Jan 2.
    assert snaps["event_timestamp"].dt.strftime("%m-%d").tolist() == ["01-02", "01-03"]
    assert snaps["ad_impressions"].tolist() == [1, 3]
    assert snaps["ad_ctr"].iloc[0] == pytest.approx(smoothed_rate(1, 1, 0.1, 10)[()])
