"""The people-you-may-know service over real HTTP: BentoML serving the champion of the tiny flow run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pipelines import cases
from pipelines.core import registry
from pipelines.core.flowset import open_run
from pipelines.core.serving import running_service
from pipelines.people_you_may_know.pipeline import STORE
from pipelines.people_you_may_know.store import ListStore

pytestmark = pytest.mark.e2e
CASE = "people_you_may_know"


@pytest.fixture(scope="module")
def url(case_run: Callable[[str], dict[str, Any]]) -> Iterator[str]:
    case_run(CASE)
    with running_service(CASE) as base:
        yield base


@pytest.fixture(scope="module")
def store(case_run: Callable[[str], dict[str, Any]]) -> tuple[ListStore, str]:
    case_run(CASE)
    run = open_run(cases.spec(CASE))
    _, model = registry.load_champion(CASE)
    return ListStore(run.work(STORE)), model.list_id


def post(url: str, body: Any) -> httpx.Response:
    return httpx.post(f"{url}/recommend", json=body, timeout=30)


def test_an_active_user_gets_the_precomputed_list_and_an_inactive_one_the_fallback(
        url: str, store: tuple[ListStore, str]) -> None:
    table, list_id = store
    active, inactive = table.users_with_list(list_id, 1)[0], table.users_without_list(list_id, 1)[0]
    r = post(url, {"user_id": active, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "precomputed"
    assert [p["user_id"] for p in body["people"]] == [c for c, _, _ in table.recommendations(list_id, active)][:5]
    r = post(url, {"user_id": inactive, "k": 50})
    body = r.json()
    assert body["source"] == "on_demand" and body["people"]
    friends = {f for _, f in table.friends(list_id, [inactive])}
    got = {p["user_id"] for p in body["people"]}
    assert not got & friends and inactive not in got and not got & table.blocked(list_id, inactive)
    scores = [p["score"] for p in body["people"]]
    assert scores == sorted(scores, reverse=True)  # Adamic-Adar, best first


def test_a_new_user_is_answered_from_the_friends_the_request_names(url: str, store: tuple[ListStore, str]) -> None:
    table, list_id = store
    friends = table.users_with_list(list_id, 3)
    r = post(url, {"user_id": 2**40, "k": 20, "friends": friends})
    assert r.status_code == 200, r.text
    body = r.json()
    got = {p["user_id"] for p in body["people"]}
    assert body["source"] == "on_demand" and got
    assert not got & set(friends) and 2**40 not in got
    theirs = {f for _, f in table.friends(list_id, friends)}
    assert got <= theirs  # friends of the named friends
    assert all(p["mutual_friends"] >= 1 for p in body["people"])


def test_a_user_the_graph_does_not_know_gets_an_empty_list(url: str) -> None:
    r = post(url, {"user_id": 2**40, "k": 3})
    assert r.status_code == 200 and r.json() == {**r.json(), "source": "none", "people": []}


@pytest.mark.parametrize(("body", "field"), [
    ({"user_id": "5"}, "user_id"), ({"user_id": 5, "k": 0}, "k"), ({"user_id": 5, "k": 10_000}, "k"),
    ({"user_id": 5, "friend_ids": [1]}, "friend_ids"), ({}, "user_id"), ({"user_id": -3}, "user_id"),
    ({"user_id": 5, "friends": ["1"]}, "friends"), ({"user_id": 5, "friends": [1] * 5001}, "friends"),
])
def test_a_bad_request_gets_a_400_naming_the_field(url: str, body: dict[str, Any], field: str) -> None:
    r = post(url, body)
    assert r.status_code == 400, r.text
    assert field in r.text


def test_malformed_json_gets_a_400(url: str) -> None:
    r = httpx.post(f"{url}/recommend", content=b'{"user_id": 5', headers={"content-type": "application/json"},
                   timeout=30)
    assert r.status_code == 400 and "JSON" in r.text
