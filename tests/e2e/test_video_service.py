"""The video recommendation service over real HTTP: BentoML serving the champion of the tiny flow run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from pipelines import cases
from pipelines.core.flowset import open_run
from pipelines.core.serving import running_service
from pipelines.core.settings import Paths

pytestmark = pytest.mark.e2e
CASE = "video_recommendation"
GENERATORS = {"popular", "trending", "demographic_popular", "als", "two_tower", "co_visit"}


@pytest.fixture(scope="module")
def url(video_run: dict[str, Any]) -> Iterator[str]:
    with running_service(CASE) as base:
        yield base


@pytest.fixture(scope="module")
def active_user(video_run: dict[str, Any]) -> int:
    inter = open_run(cases.spec(CASE)).validated("interactions")
    return int(inter.loc[inter["positive"] == 1, "user_id"].value_counts().index[0])


def post(url: str, body: Any) -> httpx.Response:
    return httpx.post(f"{url}/recommend", json=body, timeout=30)


def test_readyz_names_the_champion(url: str, video_run: dict[str, Any]) -> None:
    r = httpx.get(f"{url}/readyz", timeout=10)
    assert r.status_code == 200 and r.json()["model_tag"] == video_run["deploy"]["champion"]


def test_a_known_user_gets_k_distinct_unseen_videos_with_their_stages(url: str, active_user: int) -> None:
    r = post(url, {"user_id": active_user, "k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    videos = body["videos"]
    assert body["user_known"] and len(videos) == 10
    assert [v["rank"] for v in videos] == list(range(1, 11))
    assert len({v["video_id"] for v in videos}) == 10
    assert all(v["stage"] and set(v["stage"]) <= GENERATORS for v in videos)
    # Videos the user engaged with before the model's clock (the end of its data) are not recommended.
    as_of = pd.Timestamp(json.loads((Paths.from_env().work(CASE) / "artifacts" / "lineage.json").read_text())
                         ["windows"]["test"])
    inter = open_run(cases.spec(CASE)).validated("interactions")
    seen = set(inter.loc[(inter["user_id"] == active_user) & (inter["positive"] == 1)
                         & (inter["event_timestamp"] < as_of), "video_id"])
    assert seen and not seen & {v["video_id"] for v in videos}


def test_a_cold_start_user_gets_videos_for_their_demographics(url: str) -> None:
    lists = {}
    for country, age in (("BR", 22), ("JP", 64)):
        r = post(url, {"user_id": 9_000_000_000, "k": 5, "country": country, "age": age})
        assert r.status_code == 200, r.text
        body = r.json()
        assert not body["user_known"] and len(body["videos"]) == 5
        assert all(set(v["stage"]) <= GENERATORS for v in body["videos"])
        lists[country] = [v["video_id"] for v in body["videos"]]
    assert lists["BR"] != lists["JP"]  # no history, but the context still personalises the list


@pytest.mark.parametrize("body, field", [
    ({"user_id": "7"}, "user_id"),
    ({"user_id": 0}, "user_id"),
    ({"user_id": 2**63}, "user_id"),
    ({"user_id": 1, "k": 0}, "k"),
    ({"user_id": 1, "k": 10_000}, "k"),
    ({"user_id": 1, "gender": "x"}, "gender"),
    ({"user_id": 1, "at": "2026-01-12T00:00:00"}, "at"),  # no time zone
    ({"user_id": 1, "favourite": 3}, "favourite"),
    ({}, "user_id"),
])
def test_bad_requests_get_400_naming_the_field(url: str, body: dict[str, Any], field: str) -> None:
    r = post(url, body)
    assert r.status_code == 400, r.text
    assert field in r.text


@pytest.mark.parametrize("at", ["9999-01-01T00:00:00Z", "2262-04-12T00:00:00Z", "1677-09-21T00:00:00Z"])
def test_a_request_time_outside_the_models_range_is_a_400_saying_so(url: str, at: str) -> None:
    r = post(url, {"user_id": 1, "at": at})  # beyond pandas' timestamps: was a 500
    assert r.status_code == 400, r.text
    assert "at: Value error, must be from 1970-01-01 up to 2200-01-01 (UTC)" in r.json()["error"]


def test_malformed_json_is_a_400(url: str) -> None:
    r = httpx.post(f"{url}/recommend", content=b"{not json", headers={"content-type": "application/json"},
                   timeout=10)
    assert r.status_code == 400
