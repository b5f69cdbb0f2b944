"""The events world: always-new events, an exact exposed probability, position bias and the drift knob."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.event_recommendation.features import tables
from pipelines.event_recommendation.model import Catalog, open_seats
from pipelines.world.event import EventWorld
from pipelines.world.population import SCALES


@pytest.fixture(scope="module")
def window() -> dict[str, pd.DataFrame]:
    return EventWorld(seed=3, scale=SCALES["tiny"]).window(0, 10)


def test_every_impression_is_of_a_new_upcoming_event(window: dict[str, pd.DataFrame]) -> None:
    imp = window["impressions"].merge(window["events"], on="event_id")
    assert len(imp) == len(window["impressions"])
    assert (imp["created_ts"] <= imp["event_timestamp"]).all() and (imp["event_timestamp"] < imp["start_ts"]).all()
    lead = (window["events"]["start_ts"] - window["events"]["created_ts"]).dt.total_seconds() / 86_400
    assert lead.between(1, 11).all()


def test_the_exposed_probability_matches_the_labels_and_position_matters(window: dict[str, pd.DataFrame]) -> None:
    imp = window["impressions"]
    assert imp["registered"].mean() == pytest.approx(imp["p_register"].mean(), rel=0.1)
    by_position = imp.groupby("position")["p_register"].mean()
    assert by_position.iloc[0] > 1.5 * by_position.iloc[-1]
    assert imp[imp["registered"] == 1].groupby(["user_id", "event_id"]).size().max() == 1  # one registration each


def test_windows_are_deterministic_and_drift_moves_prices() -> None:
    world = EventWorld(seed=3, scale=SCALES["tiny"])
    a, b = world.window(10, 2), EventWorld(seed=3, scale=SCALES["tiny"]).window(10, 2)
    pd.testing.assert_frame_equal(a["impressions"], b["impressions"])
    moved = world.window(10, 2, drift=1.0)
    calm_new = a["events"]["created_ts"] >= pd.Timestamp("2026-01-11", tz="UTC")
    drift_new = moved["events"]["created_ts"] >= pd.Timestamp("2026-01-11", tz="UTC")
    assert drift_new.any()
    assert moved["events"].loc[drift_new, "price"].mean() > 1.8 * a["events"].loc[calm_new, "price"].mean()


def test_friends_registered_counts_what_the_world_counted(window: dict[str, pd.DataFrame]) -> None:
    """A registration counts for the friends it had by the next midnight, from that midnight on."""
    w = window
    feats = tables(w["events"], w["impressions"], w["friendships"], w["invitations"], w["homes"], w["users"], 0.03)
    friends = feats["user_event_friends"]
    assert len(friends) and (friends["event_timestamp"] == friends["event_timestamp"].dt.floor("D")).all()
    reg = w["impressions"][w["impressions"]["registered"] == 1]
    assert friends["friends_registered"].max() >= 1 and len(reg) > 0


def test_the_rule_filter_keeps_only_near_upcoming_open_events() -> None:
    t0 = pd.Timestamp("2026-01-05", tz="UTC")
    events = pd.DataFrame({"event_id": [1, 2, 3, 4, 5], "host_id": 1, "category": "music",
                           "venue_lat": [40.71, 40.72, 41.5, 40.71, 40.71], "venue_lon": -74.0,
                           "start_ts": t0 + pd.to_timedelta([1, 2, 1, -1, 20], unit="D"),
                           "event_timestamp": t0 - pd.Timedelta(days=1), "capacity": 10})
    cat = Catalog.of(events)
    idx, dist = cat.upcoming(40.71, -74.0, t0.timestamp(), radius_km=30, days=7)
    assert cat.event_id[idx].tolist() == [1, 2] and (dist < 30).all()  # not far (3), past (4) or late (5)
    assert open_seats(np.array([10, 10]), [10, None], [None, None]).tolist() == [False, True]  # full
    assert open_seats(np.array([10, 10]), [1, 2], [1, None]).tolist() == [False, True]  # registered already
