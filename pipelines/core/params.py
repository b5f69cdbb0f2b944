"""A case's params.yaml section, checked against its typed model before any step runs.

A wrong type, a missing key, an unknown key or a value out of range is one ``ConfigError`` line per
problem, naming the key, the value and what is allowed, so a typo never costs a retrain first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from pipelines.core.case import CaseParams, CaseSpec
from pipelines.core.settings import ConfigError, Paths, load_params


def explain(exc: ValidationError, where: str, prefix: str = "") -> str:
    """pydantic's errors as lines a person can act on: ``where: key = value: what is allowed``."""
    lines = []
    for e in exc.errors():
        key = prefix + ".".join(str(p) for p in e["loc"])
        if e["type"] == "missing":
            lines.append(f"{where}: missing key {key}")
        elif e["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key {key} (a typo? remove it or check the docs for the allowed keys)")
        else:
            lines.append(f"{where}: {key} = {e.get('input')!r} is not allowed: {e['msg'].rstrip('.')}")
    return "\n".join(lines)


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, nested mappings merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def case_params(spec: CaseSpec, overrides: Mapping[str, Any] | None = None, paths: Paths | None = None
                ) -> CaseParams:
    """The case's checked params: params.yaml's section with the run's overrides (CLI options) on top."""
    paths = paths or Paths.from_env()
    section = merged(load_params(spec.name, paths), overrides or {})
    try:
        return spec.params.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(explain(exc, str(paths.params_file), prefix=f"{spec.name}.")) from None
