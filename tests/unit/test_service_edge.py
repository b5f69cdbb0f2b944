"""The service base without a server: the generated Bento config, request types and the ASGI edge."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from pipelines import cases
from pipelines.core.api import (
    DOCS_CSP,
    PrivateDocs,
    RateLimitedLog,
    RequestTime,
    ValidateRequests,
)
from pipelines.core.serving import LOCK_FILE, SERVING_PACKAGES, bento_build_config
from pipelines.core.settings import ConfigError


def lock_pins() -> dict[str, str]:
    """The lock read the plain way: ``name==version`` lines, names compared case- and separator-blind."""
    pins = {}
    for line in LOCK_FILE.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


@pytest.mark.parametrize("case", list(cases.CASES))
def test_the_generated_build_config_pins_exactly_the_locks_versions(case: str) -> None:
    spec = cases.spec(case)
    config = bento_build_config(case, spec.serving_packages, "the case's doc")
    python = config["python"]
    assert python["lock_packages"] is False  # no network at build time
    pinned = dict(p.split("==") for p in python["packages"])
    assert set(pinned) == {re.sub(r"[-_.]+", "-", p).lower() for p in (*SERVING_PACKAGES, *spec.serving_packages)}
    lock = lock_pins()
    assert pinned == {name: lock[name] for name in pinned}
    assert config["service"] == f"services.{case}.service:{''.join(p.capitalize() for p in case.split('_'))}"
    assert f"services/{case}/*.py" in config["include"] and config["description"] == "the case's doc"


def test_a_serving_package_missing_from_the_lock_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\['not-a-real-dist'\] are not pinned.*make lock"):
        bento_build_config("ad_click", ("torch", "Not_A_Real.Dist"), "doc")


@pytest.mark.parametrize("at", ["9999-01-01T00:00:00Z", "2262-04-12T00:00:00Z", "1677-09-21T00:00:00Z",
                                "1969-12-31T23:59:59Z"])
def test_a_request_time_outside_the_range_is_a_validation_error(at: str) -> None:
    with pytest.raises(ValidationError, match="must be from 1970-01-01 up to 2200-01-01"):
        TypeAdapter(RequestTime).validate_python(at)


def test_a_request_time_needs_a_zone_and_keeps_it() -> None:
    assert TypeAdapter(RequestTime).validate_python("2026-01-12T08:30:00+02:00").utcoffset() == timedelta(hours=2)
    with pytest.raises(ValidationError, match="timezone"):
        TypeAdapter(RequestTime).validate_python("2026-01-12T08:30:00")


def test_the_bad_request_log_is_rate_limited_and_counts_what_it_left_out(caplog: pytest.LogCaptureFixture
                                                                         ) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("test.bad_requests"), per_window=2, window_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "test.bad_requests"):
        for i in range(5):
            log.warning(f"bad {i}")
        now[0] = 10.0
        log.warning("bad 5")
    assert [r.getMessage() for r in caplog.records] == ["bad 0", "bad 1", "bad 5 (3 earlier bad requests not logged)"]
    assert all(r.exc_info is None for r in caplog.records)


class Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    user_id: int


def serve(middleware: Any, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, list[bytes]]:
    """One request through ``middleware`` in front of an app that records the bodies it receives."""
    received: list[bytes] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        received.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"handled"})

    service = SimpleNamespace(name="toy", path_prefix=None, apis={"rank": SimpleNamespace(route="/rank",
                                                                                        input_spec=Request)})

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=middleware(app, service=service))
        async with httpx.AsyncClient(transport=transport, base_url="http://toy") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(call()), received


def test_a_valid_body_reaches_the_service_unchanged() -> None:
    body = b'{"user_id": 7}'
    r, received = serve(ValidateRequests, "POST", "/rank", content=body, headers={"content-type": "application/json"})
    assert (r.status_code, r.text, received) == (200, "handled", [body])


@pytest.mark.parametrize("body, field", [(b'{"user_id": "7"}', "user_id"), (b'{"user_id": 7, "k": 1}', "k"),
                                         (b"{not json", "Invalid JSON"), (b"", "user_id")])
def test_a_bad_body_is_a_400_naming_the_field_and_never_reaches_the_service(body: bytes, field: str) -> None:
    r, received = serve(ValidateRequests, "POST", "/rank", content=body)
    assert r.status_code == 400 and received == []
    error = r.json()
    assert error["error"].startswith("1 validation error for Request: ") and field in error["error"]
    assert isinstance(error["detail"], list) and {"type", "loc", "msg"} <= set(error["detail"][0])


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=x",
                                          "application/x-www-form-urlencoded", "application/vnd.bentoml+pickle"])
def test_a_form_or_pickle_body_is_a_415(content_type: str) -> None:
    r, received = serve(ValidateRequests, "POST", "/rank", content=b"user_id=7", headers={"content-type": content_type})
    assert r.status_code == 415 and received == [] and "application/json" in r.json()["error"]


def test_other_routes_pass_through() -> None:
    assert serve(ValidateRequests, "POST", "/other", content=b"x")[0].text == "handled"
    assert serve(ValidateRequests, "GET", "/rank")[0].text == "handled"


def test_the_docs_page_loads_nothing_from_a_third_party() -> None:
    r, received = serve(PrivateDocs, "GET", "/")
    assert r.status_code == 200 and received == []
    assert r.headers["content-security-policy"] == DOCS_CSP and "default-src 'none'" in DOCS_CSP
    sources = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert sources and all(s.startswith("./static_content/") for s in sources)
    assert "googletagmanager" not in r.text and "validatorUrl: null" in r.text
