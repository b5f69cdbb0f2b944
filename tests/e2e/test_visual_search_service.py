"""The visual_search service over HTTP: JSON and multipart uploads, real answers, bad images as 4xx."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from pipelines import cases
from pipelines.core.flowset import open_run
from pipelines.core.serving import running_service
from pipelines.core.settings import Paths

pytestmark = pytest.mark.e2e
CASE = "visual_search"


@pytest.fixture(scope="module")
def url(case_run: Callable[[str], dict[str, Any]], casebook_home: Path) -> Iterator[str]:
    case_run(CASE)
    with running_service(CASE, paths=Paths(casebook_home)) as base:
        yield base


@pytest.fixture(scope="module")
def public_image(case_run: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    run = open_run(cases.spec(CASE))
    images = run.validated("images")
    public = images[(images["split"] == "catalog") & (images["private"] == 0) & (images["owner_id"] > 0)]
    return public.iloc[3].to_dict()


def test_a_catalog_image_finds_itself_first_as_json_and_as_multipart(url: str, public_image: dict[str, Any]) -> None:
    by_json = httpx.post(f"{url}/search", json={"image_b64": public_image["png"], "k": 5}).json()
    upload = httpx.post(f"{url}/search", files={"image": ("q.png", base64.b64decode(public_image["png"]), "image/png")},
                        data={"k": "5"}).json()
    for body in (by_json, upload):
        first = body["results"][0]
        assert first["image_id"] == public_image["image_id"] and first["score"] == pytest.approx(1.0, abs=1e-4)
        assert first["label"] == public_image["label"] and len(body["results"]) == 5
    assert by_json["results"] == upload["results"]


def test_a_big_colour_jpeg_is_converted_and_answered(url: str) -> None:
    arr = np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    r = httpx.post(f"{url}/search", files={"image": ("big.jpg", buf.getvalue(), "image/jpeg")})
    assert r.status_code == 200 and len(r.json()["results"]) == 10


def test_blocked_owners_are_filtered(url: str, public_image: dict[str, Any]) -> None:
    body = {"image_b64": public_image["png"], "k": 5, "exclude_owners": [int(public_image["owner_id"])]}
    results = httpx.post(f"{url}/search", json=body).json()["results"]
    assert public_image["image_id"] not in [r["image_id"] for r in results]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"json": {"image_b64": base64.b64encode(b"not an image").decode()}}, "not an image"),
    ({"json": {"image_b64": "%%% not base64"}}, "base64"),
    ({"json": {"image_b64": base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").decode()}}, "image"),
    ({"json": {"image_path": "/etc/passwd"}}, "image_b64"),
    ({"json": {"image_b64": "/etc/passwd"}}, "base64"),
    ({"files": {"image": ("x.png", b"", "image/png")}}, "image_b64"),
    ({"files": {"photo": ("x.png", b"abc", "image/png")}}, "photo"),
    ({"data": {"image": "/etc/passwd"}, "files": {"other": ("x", b"1")}}, "image"),
])
def test_bad_images_get_a_4xx_with_a_clear_message(url: str, kwargs: dict[str, Any], message: str) -> None:
    r = httpx.post(f"{url}/search", **kwargs)
    assert 400 <= r.status_code < 500 and message in r.json()["error"], r.text


def test_absurd_dimensions_are_refused(url: str) -> None:
    buf = io.BytesIO()
    Image.new("L", (6000, 5000)).save(buf, format="PNG")  # 30 Mpx of black: a few KB
    r = httpx.post(f"{url}/search", files={"image": ("bomb.png", buf.getvalue(), "image/png")})
    assert r.status_code == 400 and "absurd dimensions" in r.json()["error"]
