"""Building blocks of every case's BentoML service: serving config, id types and a ``/readyz`` with the tag.

Imported by ``services/<case>/service.py`` only (it imports BentoML), so the pipelines never pay for it.
"""

from __future__ import annotations

from typing import Annotated, Any

import bentoml
from pydantic import Field

from pipelines.core.settings import ConfigError, Paths, load_params

EntityId = Annotated[int, Field(ge=1, le=2**63 - 1)]
"""Feast entity keys are int64: a larger id would fail inside the store, so it is a 400 at the edge."""


def serving_params(case: str, defaults: dict[str, int], paths: Paths | None = None) -> dict[str, int]:
    """``<case>.serving`` from params.yaml over ``defaults``; no params file means the defaults.

    Every value is a positive integer (sizes, counts, seconds); an unknown key is a typo, not ignored.
    """
    paths = paths or Paths.from_env()
    section = load_params(case, paths).get("serving") if paths.params_file.exists() else None
    out = dict(defaults)
    for key, value in (section or {}).items():
        if key not in out:
            raise ConfigError(f"unknown key {case}.serving.{key} in {paths.params_file}; allowed: {sorted(out)}")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{case}.serving.{key} must be a positive integer, got {value!r}")
        out[key] = value
    return out


class ReadyzWithTag:
    """BentoML owns ``GET /readyz`` (plain 200, empty body); answer it with the model tag once loaded.

    The service instance exposes the served champion's tag as ``model_tag``.
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
                from starlette.responses import JSONResponse

                await JSONResponse({"status": "ready", "model_tag": tag})(scope, receive, send)
                return
        await self.app(scope, receive, send)
