"""Every case's service against its own OpenAPI spec: property-based fuzzing and the hostile-input regressions.

Schemathesis generates requests from the served ``/docs.json`` (valid ones and, for request bodies,
invalid ones), a fixed number per operation, derandomized so a run is repeatable. Each response must not
be a 5xx and must conform to the spec (status code documented, content type, body schema), which is
what lets a client generated from the spec parse the errors too.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode, checks

from pipelines import cases
from pipelines.core.api import BAD_REQUESTS
from pipelines.core.service_base import serving_params
from pipelines.core.serving import running_service
from pipelines.core.settings import Paths

pytestmark = pytest.mark.e2e

EXAMPLES = 500
"""Generated requests per operation and mode: ~1,000 bodies per API, ~15 s per service."""
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]
ROUTES = {"ad_click": "/rank", "video_recommendation": "/recommend", "harmful_content": "/moderate",
          "event_recommendation": "/recommend", "visual_search": "/search", "people_you_may_know": "/recommend"}


class Served(NamedTuple):
    case: str
    url: str
    log: Path


@pytest.fixture(scope="module", params=list(cases.CASES))
def served(request: pytest.FixtureRequest, case_run: Callable[[str], dict[str, Any]], casebook_home: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The case's tiny-run champion served on loopback, as the deploy step serves it, and its log."""
    case = request.param
    case_run(case)
    log = tmp_path_factory.mktemp(case) / "serve.log"
    with running_service(case, paths=Paths(casebook_home), log_file=log) as url:
        yield Served(case, url, log)


def test_fuzzed_requests_get_no_5xx_and_conform_to_the_spec(served: Served, casebook_home: Path) -> None:
    case, url, log = served
    schema = schemathesis.openapi.from_url(f"{url}/docs.json")
    counts: Counter[str] = Counter()
    start = time.monotonic()

    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # a spec schemathesis cannot read fails here
        modes = [GenerationMode.POSITIVE, *([GenerationMode.NEGATIVE] if operation.body else [])]
        for mode in modes:
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            @given(operation.as_strategy(generation_mode=mode))
            def fuzz(generated: schemathesis.Case) -> None:
                response = generated.call(base_url=url, timeout=30)
                counts["requests"] += 1
                counts[f"{response.status_code // 100}xx"] += 1
                generated.validate_response(response, checks=CHECKS)

            fuzz()
    print(f"\n{case}: {counts['requests']} requests, {counts['2xx']} 2xx, {counts['4xx']} 4xx, "
          f"{counts['5xx']} 5xx")
    assert counts["5xx"] == 0
    assert counts["4xx"] > 0 and counts["2xx"] > 0  # the run reached both the handler and the edge
    # Bad requests are the client's doing: one rate-limited WARNING line each, never an ERROR traceback.
    text = log.read_text(errors="replace")
    bad = [line for line in text.splitlines() if re.search(r"\[WARNING\].* 4\d\d POST /", line)]
    assert "Traceback" not in text and "Exception on" not in text
    windows = 2 + (time.monotonic() - start) // BAD_REQUESTS.window_s  # each worker's limiter starts at import
    workers = serving_params(cases.spec(case), Paths(casebook_home)).workers
    assert 0 < len(bad) <= workers * BAD_REQUESTS.per_window * windows < counts["4xx"], bad[:3]


def _first_field(spec: dict[str, Any], path: str) -> tuple[str, Any]:
    """The API's first required JSON field and a value of the wrong type for it (from the served spec, whether
    the body schema is a reference or inline)."""
    body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]] if "$ref" in body else body
    name = schema["required"][0]
    return name, 1 if schema["properties"][name].get("type") == "string" else "1"


def _takes_multipart(spec: dict[str, Any], path: str) -> bool:
    return "multipart/form-data" in spec["paths"][path]["post"]["requestBody"]["content"]


def test_multipart_without_a_boundary_is_a_4xx(served: Served) -> None:
    """415 for an API that takes JSON only; 400 (malformed) for one that declares file uploads."""
    case, url, _ = served
    spec = httpx.get(f"{url}/docs.json").json()
    r = httpx.post(f"{url}{ROUTES[case]}", content=b"user_id=1", headers={"content-type": "multipart/form-data"})
    if _takes_multipart(spec, ROUTES[case]):
        assert r.status_code == 400 and "multipart" in r.json()["error"], r.text
    else:
        assert r.status_code == 415, r.text
        assert "application/json" in r.json()["error"]


def test_error_bodies_match_the_published_schema(served: Served) -> None:
    case, url, _ = served
    spec = httpx.get(f"{url}/docs.json").json()
    responses = spec["paths"][ROUTES[case]]["post"]["responses"]
    field, wrong = _first_field(spec, ROUTES[case])
    for status, content, content_type in [(400, json.dumps({field: wrong, "typo": 3}).encode(), "application/json"),
                                          (400, b"{not json", "application/json"),
                                          (415, b"user_id=1", "application/x-www-form-urlencoded")]:
        r = httpx.post(f"{url}{ROUTES[case]}", content=content, headers={"content-type": content_type})
        assert r.status_code == status, r.text
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        jsonschema.validate(r.json(), {**schema, "components": spec["components"]})
    body = httpx.post(f"{url}{ROUTES[case]}", json={field: wrong}).json()
    assert isinstance(body["detail"], list) and body["detail"][0]["loc"] == [field]
    assert field in body["error"]


def test_the_swagger_ui_loads_nothing_from_third_parties(served: Served) -> None:
    url = served.url
    page = httpx.get(f"{url}/")
    assert page.status_code == 200
    assert "googletagmanager" not in page.text and "<iframe" not in page.text and "<img" not in page.text
    assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", page.text)
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for source in re.findall(r'(?:src|href)="([^"]+)"', page.text):  # what it loads is served here
        assert not re.match(r"(https?:)?//", source) and httpx.get(f"{url}/{source}").status_code == 200
    description = httpx.get(f"{url}/docs.json").json()["info"]["description"]
    assert "![" not in description and "<img" not in description and "img.shields.io" not in description
