"""The event recommendation service over real HTTP: BentoML serving the champion of the tiny flow run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from pipelines import cases
from pipelines.core.flowset import open_run
from pipelines.core.serving import running_service
from pipelines.world.social import haversine_km

pytestmark = pytest.mark.e2e
CASE = "event_recommendation"


@pytest.fixture(scope="module")
def url(case_run: Callable[[str], dict[str, Any]]) -> Iterator[str]:
    case_run(CASE)
    with running_service(CASE) as base:
        yield base


@pytest.fixture(scope="module")
def data(case_run: Callable[[str], dict[str, Any]]) -> dict[str, pd.DataFrame]:
    case_run(CASE)
    run = open_run(cases.spec(CASE))
    return {t: run.validated(t) for t in ("impressions", "events", "homes")}


def post(url: str, body: Any) -> httpx.Response:
    return httpx.post(f"{url}/recommend", json=body, timeout=30)


def test_the_filter_never_returns_a_past_full_distant_or_registered_event(url: str, data: dict[str, pd.DataFrame]
                                                                          ) -> None:
    imps, events, homes = data["impressions"], data["events"].set_index("event_id"), data["homes"]
    at = imps["event_timestamp"].max()
    regs = imps[imps["registered"] == 1]
    full = regs.groupby("event_id").size()
    checked = 0
    for user in imps["user_id"].value_counts().index[:15]:
        home = homes[homes["user_id"] == user].iloc[0]
        r = post(url, {"user_id": int(user), "k": 50, "radius_km": 20.0, "days": 5.0})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["user_known"] and body["location"] == "home"
        mine = set(regs.loc[(regs["user_id"] == user) & (regs["event_timestamp"] < at.floor("D")), "event_id"])
        for e in body["events"]:
            ev = events.loc[e["event_id"]]
            assert at < ev["start_ts"] <= at + pd.Timedelta(days=5)
            dist = float(haversine_km(home["home_lat"], home["home_lon"], ev["venue_lat"], ev["venue_lon"]))
            assert e["distance_km"] == pytest.approx(dist, rel=1e-6) and dist <= 20.0
            assert full.get(e["event_id"], 0) <= ev["capacity"] and e["event_id"] not in mine
            checked += 1
        scores = [e["score"] for e in body["events"]]
        assert scores == sorted(scores, reverse=True)
    assert checked > 0


def test_a_cold_start_user_is_ranked_on_location_and_a_located_request_moves_it(url: str,
                                                                                data: dict[str, pd.DataFrame]) -> None:
    home = data["homes"].iloc[0]
    r = post(url, {"user_id": 2**62, "k": 5, "lat": float(home["home_lat"]), "lon": float(home["home_lon"]),
                   "radius_km": 50.0})
    assert r.status_code == 200 and not r.json()["user_known"] and r.json()["location"] == "request"
    assert all(e["distance_km"] <= 50 for e in r.json()["events"])
    nowhere = post(url, {"user_id": 2**62, "k": 5})
    assert nowhere.status_code == 200 and nowhere.json()["location"] == "none"
    assert all(e["distance_km"] is None for e in nowhere.json()["events"])


@pytest.mark.parametrize("body", [{"user_id": 1, "lat": 91.0, "lon": 0.0}, {"user_id": 1, "lat": 10.0},
                                  {"user_id": 1, "k": 0}, {"user_id": 1, "k": 10_000},
                                  {"user_id": 1, "radius_km": -1.0}, {"user_id": 1, "typo": 1},
                                  {"user_id": 1, "lat": "x", "lon": 1.0}])
def test_bad_requests_get_a_400_naming_the_problem(url: str, body: dict[str, Any]) -> None:
    r = post(url, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]


def test_malformed_json_is_a_400(url: str) -> None:
    r = httpx.post(f"{url}/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
