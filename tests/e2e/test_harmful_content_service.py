"""The harmful content service over real HTTP: decisions at the stored thresholds, the queue, bad input."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from pipelines.core import registry
from pipelines.core.review import ReviewQueue
from pipelines.core.serving import running_service
from pipelines.core.settings import Paths
from pipelines.harmful_content.model import Thresholds

pytestmark = pytest.mark.e2e
CASE = "harmful_content"
REMOVED = "those people are vermin subhuman trash go back to your country"
BAND = "free followers now click here to win"


@pytest.fixture(scope="module")
def served(case_run: Callable[[str], dict[str, Any]], casebook_home: Path) -> Iterator[tuple[str, Any]]:
    """The champion with thresholds set around two known posts, registered as its own model and served."""
    case_run(CASE)
    paths = Paths(casebook_home)
    registry.use_home(paths)
    _, model = registry.load_champion(CASE)
    p = dict(zip(model.classes, model.predict(pd.DataFrame([{"text": REMOVED}, {"text": BAND}])).T, strict=True))
    model.thresholds = {c: Thresholds(remove=1.01, review=1.01) for c in model.classes}
    model.thresholds["hate"] = Thresholds(remove=float(p["hate"][0]) * 0.99, review=float(p["hate"][0]) * 0.5)
    model.thresholds["spam"] = Thresholds(remove=1.01, review=float(p["spam"][1]) * 0.99)
    tag = registry.save(CASE, model, metrics={}, lineage={"test": "thresholds around two posts"})
    with running_service(CASE, paths=paths, model_tag=tag) as url:
        yield url, model


def test_a_post_above_the_removal_threshold_is_removed(served: tuple[str, Any]) -> None:
    url, model = served
    # an author with no history, as the frame the thresholds were set on (a known one adds its priors and age)
    r = httpx.post(f"{url}/moderate", json={"user_id": 2**40, "text": REMOVED})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] == "remove" and body["decided_by"][0]["harm_class"] == "hate"
    assert body["decided_by"][0]["threshold"] == pytest.approx(model.thresholds["hate"].remove)
    assert set(body["probabilities"]) == set(model.classes) and not body["queued"]


def test_a_post_in_the_band_lands_in_the_queue_exactly_once(served: tuple[str, Any], casebook_home: Path) -> None:
    url, _ = served
    body = {"user_id": 2**40, "text": BAND, "post_id": 987_654_321}
    answers = [httpx.post(f"{url}/moderate", json=body).json() for _ in range(3)]  # a client retrying
    assert [a["decision"] for a in answers] == ["review"] * 3
    assert [a["queued"] for a in answers] == [True, False, False]
    items = [i for i in ReviewQueue.of(Paths(casebook_home), CASE).items("all") if i["item_id"] == 987_654_321]
    assert len(items) == 1 and items[0]["payload"]["text"] == BAND


@pytest.mark.parametrize(("body", "field"), [
    ({"user_id": 1, "text": "x" * 5001}, "text"),
    ({"user_id": 1, "text": "hi", "image_embedding": [0.1] * 3}, "image_embedding"),
    ({"user_id": 1, "text": "hi", "colour": "red"}, "colour"),
    ({"user_id": 0, "text": "hi"}, "user_id"),
])
def test_bad_posts_get_a_4xx_naming_the_field(served: tuple[str, Any], body: dict[str, Any], field: str) -> None:
    url, _ = served
    r = httpx.post(f"{url}/moderate", json=body)
    assert r.status_code == 400, r.text
    assert field in r.text


def test_nan_infinity_and_malformed_json_are_a_4xx(served: tuple[str, Any]) -> None:
    url, _ = served
    bad = [b'{"user_id": 1, "text": "hi", "image_embedding": [' + v + b", 0.0" * 15 + b"]}"
           for v in (b"NaN", b"1e999", b"Infinity")]
    for content in (*bad, b'{"user_id": 1, "text": '):
        r = httpx.post(f"{url}/moderate", content=content, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, r.text
