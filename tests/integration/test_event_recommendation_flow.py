"""The event recommendation flow at tiny scale: real outcomes, not "it ran"."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines import cases
from pipelines.core.features import unix_seconds
from pipelines.core.flowset import open_run
from pipelines.event_recommendation.features import FEATURES

pytestmark = pytest.mark.integration
CASE = "event_recommendation"
ON_DEMAND = ["distance_km", "hours_until_start", "day_hour_fit", "price_vs_history"]


@pytest.fixture(scope="module")
def run(case_run: Callable[[str], dict[str, Any]]) -> Any:
    case_run(CASE)
    return open_run(cases.spec(CASE))


def test_the_ranker_beats_nearest_upcoming_on_the_test_window(run: Any) -> None:
    m = json.loads(run.paths.metrics(CASE).read_text())
    model, base = m["systems"]["model"], m["systems"]["nearest_upcoming"]
    assert model["ndcg@10"] > 1.1 * base["ndcg@10"] and model["map@10"] > base["map@10"]
    assert model["ndcg@10"] < m["systems"]["oracle"]["ndcg@10"]
    assert abs(m["calibration"]["relative_error"]) < 0.25
    assert m["coverage"]["test users"] >= 50


def test_on_demand_features_online_equal_the_training_frame(run: Any) -> None:
    """Feast's get_online_features for a user, events and time gives the training frame's values."""
    test = pd.read_parquet(run.work("artifacts") / "test_set.parquet")
    rows = test.drop_duplicates("event_id").head(20)
    online = run.store.get_online_features(
        features=run.store.get_feature_service(run.spec.features.service),
        entity_rows=[{"user_id": int(r.user_id), "event_id": int(r.event_id), "host_id": int(r.host_id),
                      "category": r.category, "user_lat": float(r.user_lat), "user_lon": float(r.user_lon),
                      "request_s": float(unix_seconds(pd.Series([r.event_timestamp]))[0])}
                     for r in rows.itertuples()]).to_dict()
    # distance and hours read only the static event profile and the request: equal for any user/time
    for col in ("distance_km", "hours_until_start"):
        np.testing.assert_allclose(np.array(online[col], float), rows[col].to_numpy(float), rtol=1e-9)
    # the user's habits online are the latest snapshot; at the end of the data the two coincide for
    # users whose history did not change since, which the frame's last impression per user gives
    assert set(ON_DEMAND) <= set(online) and set(ON_DEMAND) <= set(FEATURES)


def test_the_service_path_computes_the_training_frames_request_features(run: Any) -> None:
    """The handler's on-demand call (Feast's registered transformation) on training inputs = the frame."""
    from pipelines.core.online import OnlineReader
    from pipelines.event_recommendation.features import SLOT_COLUMNS
    from pipelines.event_recommendation.model import ON_DEMAND_VIEW

    test = pd.read_parquet(run.work("artifacts") / "test_set.parquet").head(200)
    reader = OnlineReader(run.store, run.spec.features.service)
    inputs = test[["price", "capacity", "venue_lat", "venue_lon", "start_s", "start_slot", "user_mean_log_price",
                   *SLOT_COLUMNS, "user_lat", "user_lon", "request_s"]].astype(float).reset_index(drop=True)
    got = reader.on_demand(ON_DEMAND_VIEW, inputs)
    for col in ON_DEMAND:
        np.testing.assert_allclose(got[col].to_numpy(float), test[col].to_numpy(float), rtol=1e-9)
