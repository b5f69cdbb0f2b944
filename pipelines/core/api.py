"""The HTTP edge of every case's BentoML service: request types and ASGI middlewares.

The middlewares sit in front of BentoML so each case's service gets them without a line of its own:
``/readyz`` answers with the served model tag; API bodies are validated before BentoML sees them, so a
bad request is a 4xx with one message naming the field and one rate-limited log line, never a 500 or a
traceback; the Swagger UI and the OpenAPI spec load nothing from a third party, and the spec describes
the error bodies the service really sends. Imported by the service base only (it imports BentoML), so
the pipelines never pay for it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import inspect
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import bentoml
from pydantic import AfterValidator, AwareDatetime, Field, ValidationError
from starlette.responses import HTMLResponse, JSONResponse, Response

EntityId = Annotated[int, Field(ge=1, le=2**63 - 1)]
"""Feast entity keys are int64: a larger id would fail inside the store, so it is a 400 at the edge."""

REQUEST_TIME_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
"""Pandas timestamps end in 1677 and 2262; a margin inside that keeps the models' date arithmetic safe."""


def _in_request_range(at: datetime) -> datetime:
    lo, hi = REQUEST_TIME_RANGE
    if not lo <= at < hi:
        raise ValueError(f"must be from {lo:%Y-%m-%d} up to {hi:%Y-%m-%d} (UTC), got {at.isoformat()}")
    return at


RequestTime = Annotated[AwareDatetime, AfterValidator(_in_request_range)]
"""A request's clock: ISO 8601 with a zone, within ``REQUEST_TIME_RANGE`` (else a 400, not a 500)."""


def route(service: bentoml.Service[Any], path: str) -> str:
    """``path`` under the service's ``path_prefix``, as BentoML mounts it."""
    return "/".join(((service.path_prefix or "").rstrip("/"), path.lstrip("/")))


def service_doc(service: bentoml.Service[Any]) -> str:
    """The case's own words for its service (its module docstring): the Swagger page and Bento README."""
    module = inspect.getmodule(service.inner)
    return inspect.cleandoc((module.__doc__ if module else None) or service.inner.__doc__ or service.name)


class ReadyzWithTag:
    """BentoML owns ``GET /readyz`` (plain 200, empty body); answer it with the model tag once loaded.

    The service instance exposes the served model's tag as ``model_tag``.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/readyz" and scope["method"] in ("GET", "HEAD"):
            try:
                tag = getattr(bentoml.get_current_service(), "model_tag", None)
            except bentoml.exceptions.BentoMLException:  # not instantiated yet: BentoML answers 503
                tag = None
            if tag is not None:
                await JSONResponse({"status": "ready", "model_tag": tag})(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RateLimitedLog:
    """At most ``per_window`` lines every ``window_s`` seconds; the next line says how many were left out.

    Bad requests are the client's doing and arrive as fast as a client can send them: a line each, with
    no traceback, tells the operator what happened without letting a fuzzer fill the disk.
    """

    def __init__(self, logger: logging.Logger, per_window: int = 20, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.per_window, self.window_s, self.clock = logger, per_window, window_s, clock
        self.window_start, self.sent, self.left_out = clock(), 0, 0

    def warning(self, message: str) -> None:
        now = self.clock()
        if now - self.window_start >= self.window_s:
            self.window_start, self.sent = now, 0
        if self.sent >= self.per_window:
            self.left_out += 1
            return
        self.sent += 1
        if self.left_out:
            message += f" ({self.left_out} earlier bad requests not logged)"
            self.left_out = 0
        self.logger.warning(message)


BAD_REQUESTS = RateLimitedLog(logging.getLogger("casebook.service"))
NOT_JSON = ("multipart/form-data", "application/x-www-form-urlencoded", "application/vnd.bentoml+pickle")
"""Media types BentoML would parse without our check (forms, pickles); the published API takes JSON."""


def uploads(model: Any) -> dict[str, str]:
    """The multipart file parts an input model accepts: part name -> the base64 JSON field it fills.

    A request model declares them as ``UPLOADS: ClassVar[dict[str, str]]`` (e.g. ``{"image": "image_b64"}``);
    an API without any takes JSON only.
    """
    return dict(getattr(model, "UPLOADS", None) or {})


class ValidateRequests:
    """Validate each API body against the API's input model before BentoML sees it.

    BentoML answers a body it cannot parse with a 500 (a multipart request without a boundary) or logs a
    full traceback at ERROR for every invalid one. Here a bad body is answered at the edge: 400 with
    ``{"error": "<n> validation error(s) for <Model>: <field>: <why>", "detail": [pydantic errors]}``,
    415 for a form or pickle body, and one rate-limited log line; a valid body is replayed to BentoML
    unchanged, so what the handler gets is exactly what BentoML parses.

    An API whose model declares ``UPLOADS`` also takes ``multipart/form-data``: its file parts become the
    base64 JSON fields they name, its other parts JSON values (``k=5`` is 5), and the JSON body built
    from them is validated and replayed like any other. BentoML only ever sees JSON, and no file is read
    but the bytes sent (BentoML's own file inputs would fetch a URL given as a value).
    """

    def __init__(self, app: Any, service: bentoml.Service[Any]) -> None:
        self.app = app
        self.models = {route(service, m.route): m.input_spec for m in service.apis.values()}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        model = self.models.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if model is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        media_type = headers.get(b"content-type", b"application/json").decode("latin-1")
        media_type = media_type.split(";")[0].strip().lower()
        files = uploads(model)
        if media_type in NOT_JSON and not (files and media_type == "multipart/form-data"):
            also = f" or multipart/form-data with file part(s) {', '.join(files)}" if files else ""
            message = (f"unsupported media type {media_type!r}: send the body as JSON (Content-Type: "
                       f"application/json){also}")
            await self._reject(415, {"error": message}, scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        if media_type == "multipart/form-data":
            try:
                body = await _multipart_as_json(scope, body, files)
            except ValueError as exc:
                await self._reject(400, {"error": str(exc), "detail": []}, scope, receive, send)
                return
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"]
                                          if k not in (b"content-type", b"content-length")]
                     + [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
        try:
            model.model_validate_json(body or b"{}")  # BentoML reads an empty body as {} too
        except ValidationError as exc:
            await self._reject(400, _validation_body(exc, model.__name__.removesuffix("IODescriptor")),
                               scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _reject(status: int, body: dict[str, Any], scope: dict[str, Any], receive: Any, send: Any) -> None:
        BAD_REQUESTS.warning(f"{status} {scope['method']} {scope['path']}: {body['error'][:300]}")
        await JSONResponse(body, status_code=status)(scope, receive, send)


async def _multipart_as_json(scope: dict[str, Any], body: bytes, files: dict[str, str]) -> bytes:
    """A multipart body as the JSON body it stands for; ``ValueError`` says why it is not one."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    request = Request(scope, _replay(body, _no_more))
    try:
        form = await request.form(max_files=len(files), max_fields=100)
    except Exception as exc:  # starlette/python-multipart raise several types for a malformed body
        raise ValueError(f"malformed multipart/form-data body: {exc}") from None
    out: dict[str, Any] = {}
    try:
        for name, value in form.multi_items():
            if name in out or files.get(name) in out:
                raise ValueError(f"multipart part {name!r} given twice")
            if isinstance(value, UploadFile):
                if name not in files:
                    raise ValueError(f"multipart file part {name!r} is not an upload of this API; "
                                     f"it takes {', '.join(files)}")
                out[files[name]] = base64.b64encode(await value.read()).decode("ascii")
            elif name in files:
                raise ValueError(f"multipart part {name!r} must be a file (e.g. curl -F {name}=@photo.jpg)")
            else:
                try:
                    out[name] = json.loads(value)
                except ValueError:
                    out[name] = value  # a plain string field
    finally:
        await form.close()
    return json.dumps(out).encode()


async def _no_more() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _validation_body(exc: ValidationError, model: str) -> dict[str, Any]:
    errors = exc.errors(include_context=False, include_input=False)
    n = len(errors)
    where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors[:5])
    more = f" (and {n - 5} more)" if n > 5 else ""
    return {"error": f"{n} validation error{'s' if n > 1 else ''} for {model}: {where}{more}", "detail": errors}


async def _read_body(receive: Any) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """An ASGI ``receive`` that hands on the body already read, then whatever the client sends next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> dict[str, Any]:
        return pending.pop() if pending else await receive()

    return replay


# -- documentation ---------------------------------------------------------------------------------------
DOCS_SCRIPT = ('window.ui = SwaggerUIBundle({url: "./docs.json", dom_id: "#swagger-ui", deepLinking: true, '
               'validatorUrl: null});')
"""``validatorUrl: null``: Swagger UI's default sends the spec's URL to validator.swagger.io for a badge."""
DOCS_CSP = "; ".join([
    "default-src 'none'",
    f"script-src 'self' 'sha256-{base64.b64encode(hashlib.sha256(DOCS_SCRIPT.encode()).digest()).decode()}'",
    "style-src 'self' 'unsafe-inline'",  # Swagger UI styles elements inline
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])
"""The browser itself refuses any third-party script, style, image or request, whatever the spec says."""
DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>{title}</title>
  <link rel="stylesheet" href="./static_content/swagger-ui.css">
  <link rel="icon" type="image/png" href="./static_content/favicon-light-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="./static_content/swagger-ui-bundle.js"></script>
  <script>{script}</script>
</body>
</html>
"""
ERROR_DETAIL = {
    "title": "ErrorDetail", "type": "object", "required": ["type", "loc", "msg"],
    "description": "One pydantic validation error: which field (``loc``), what is wrong (``msg``).",
    "properties": {
        "type": {"type": "string"},
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
        "url": {"type": "string"},
    },
}
ERROR_SCHEMAS = {
    "BadRequest": {"title": "BadRequest", "type": "object", "required": ["error", "detail"],
                   "description": "The body is not valid JSON for the request model.",
                   "properties": {"error": {"type": "string"},
                                  "detail": {"type": "array", "items": {"$ref": "#/components/schemas/ErrorDetail"}}}},
    "ErrorDetail": ERROR_DETAIL,
    "UnsupportedMediaType": {"title": "UnsupportedMediaType", "type": "object", "required": ["error"],
                             "description": "The body is not JSON (a form or a pickle).",
                             "properties": {"error": {"type": "string"}}},
}


def public_spec(service: bentoml.Service[Any]) -> dict[str, Any]:
    """BentoML's OpenAPI spec with the case's own description and the error bodies the service sends.

    BentoML describes its 400 ``detail`` as a string although it sends a list of errors (a generated
    client fails to parse it), and its description embeds badge images from third-party hosts.
    """
    spec = service.openapi_spec.asdict()
    spec["info"]["description"] = service_doc(service)
    spec["components"]["schemas"].update(ERROR_SCHEMAS)
    for method in service.apis.values():
        operation = spec["paths"][method.route]["post"]  # BentoML lists API paths without the prefix
        if files := uploads(method.input_spec):
            operation["requestBody"]["content"]["multipart/form-data"] = {"schema": _multipart_schema(
                method.input_spec.model_json_schema(), files)}
        responses = operation["responses"] = {str(k): v for k, v in operation["responses"].items()}
        for status, name in (("400", "BadRequest"), ("415", "UnsupportedMediaType")):
            responses[status] = {"description": ERROR_SCHEMAS[name]["description"], "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}
    return spec


def _multipart_schema(schema: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    """The JSON body's schema as multipart parts: each base64 field becomes its binary file part."""
    fields = {v: k for k, v in files.items()}
    props = {fields.get(name, name): ({"type": "string", "format": "binary", "description": p.get("description", "")}
                                      if name in fields else p) for name, p in schema.get("properties", {}).items()}
    required = [fields.get(name, name) for name in schema.get("required", [])]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


class PrivateDocs:
    """Serve the Swagger UI page and the OpenAPI spec without third-party scripts, images or requests.

    BentoML's page embeds a Google Tag Manager snippet, and its spec's description loads badges from
    img.shields.io and others: opening the docs told third parties about it. This page uses the Swagger
    UI files BentoML ships, under a Content-Security-Policy that allows this origin only.
    """

    def __init__(self, app: Any, service: bentoml.Service[Any]) -> None:
        self.app, self.service = app, service
        self.page_path, self.spec_path = route(service, "/"), route(service, "docs.json")
        self.spec: bytes | None = None  # built on first request: the service is complete by then

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        response: Response | None = None
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            if scope["path"] == self.page_path:
                page = DOCS_PAGE.format(title=html.escape(self.service.name), script=DOCS_SCRIPT)
                response = HTMLResponse(page, headers={"Content-Security-Policy": DOCS_CSP})
            elif scope["path"] == self.spec_path:
                self.spec = self.spec or json.dumps(public_spec(self.service)).encode()
                response = Response(self.spec, media_type="application/json")
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)
