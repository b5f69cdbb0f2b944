"""The model registry: BentoML's local model store plus one champion pointer per case.

Every trained model is saved immutably as ``<case>:<version>`` with its metrics and lineage in the
metadata; ``champions.json`` names the one that serves. The deploy step (``pipelines.core.flowset``)
scores challenger and champion on the same window and moves the pointer only for a better model that
built and answered a real request, so a worse retrain never replaces the serving model.

BentoML reads ``BENTOML_HOME`` once, when its container is first used; ``use_home`` sets it (and
re-points an already initialised container) so ``CASEBOOK_HOME`` moves the model store too.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pipelines.core.io import read_json, write_json
from pipelines.core.settings import Paths

CHAMPIONS_FILE = "champions.json"


def use_home(paths: Paths | None = None) -> Paths:
    """Point BentoML at ``paths.models``; safe to call before or after ``bentoml`` is imported."""
    paths = paths or Paths.from_env()
    home = str(paths.models)
    os.environ["BENTOML_HOME"] = home
    if "bentoml" in sys.modules:
        _repoint(home)
    return paths


def _repoint(home: str) -> None:
    """Override BentoML's memoised store singletons when the process already used another home."""
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer as c
    from bentoml._internal.models import ModelStore

    if os.path.realpath(c.bentoml_home.get()) == os.path.realpath(home):
        return
    dirs = {"bentos": "bento_store_dir", "models": "model_store_dir", "tmp": "tmp_bento_store_dir",
            "envs": "env_store_dir"}
    for sub, provider in dirs.items():
        os.makedirs(os.path.join(home, sub), exist_ok=True)
        getattr(c, provider).set(os.path.join(home, sub))
    c.bentoml_home.set(home)
    c.model_store.set(ModelStore(os.path.join(home, "models")))
    c.bento_store.set(BentoStore(os.path.join(home, "bentos")))
    c.tmp_bento_store.set(BentoStore(os.path.join(home, "tmp")))


def _bentoml(paths: Paths | None = None) -> Any:
    use_home(paths)
    import bentoml

    return bentoml


def _plain(obj: Any) -> Any:
    """JSON round trip: numpy scalars and paths become plain values that read back the same.

    BentoML metadata has no null: an unset value (``None``) is left out rather than made up.
    """
    def default(o: Any) -> Any:
        return o.item() if hasattr(o, "item") else str(o)

    def drop_none(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: drop_none(v) for k, v in o.items() if v is not None}
        if isinstance(o, list):
            return [drop_none(v) for v in o if v is not None]
        return o

    return drop_none(json.loads(json.dumps(obj, default=default)))


def save(case: str, model: object, *, metrics: dict[str, Any], lineage: dict[str, Any],
         labels: dict[str, str] | None = None) -> str:
    """Save a trained model with its metrics and lineage; returns the tag ``case:version``."""
    bentoml = _bentoml()
    saved = bentoml.picklable_model.save_model(
        case, model, metadata={"metrics": _plain(metrics), "lineage": _plain(lineage)}, labels=labels
    )
    return str(saved.tag)


def info(tag: str) -> dict[str, Any]:
    """The metadata (metrics, lineage) a model was saved with."""
    return dict(_bentoml().models.get(tag).info.metadata)


def load(tag: str) -> object:
    return _bentoml().picklable_model.load_model(tag)


def _champions_path(paths: Paths) -> Any:
    return paths.models / CHAMPIONS_FILE


def _champions(paths: Paths) -> dict[str, Any]:
    file = _champions_path(paths)
    return read_json(file) if file.exists() else {}


def champion(case: str) -> str | None:
    """The tag serving for ``case``, or None before the first promotion."""
    entry = _champions(Paths.from_env()).get(case)
    return entry["tag"] if entry else None


def load_champion(case: str) -> tuple[str, object]:
    """The champion's tag and model; a clear LookupError when there is none (yet)."""
    tag = champion(case)
    if tag is None:
        raise LookupError(f"no champion model for case '{case}': run `casebook run {case}` first")
    bentoml = _bentoml()
    try:
        return tag, bentoml.picklable_model.load_model(tag)
    except bentoml.exceptions.NotFound as exc:
        raise LookupError(f"champion {tag} of case '{case}' is missing from the model store "
                          f"{Paths.from_env().models}: {exc}") from exc


@contextmanager
def _locked(paths: Paths) -> Iterator[None]:
    """Serialise read-compare-write of champions.json across processes (two cases may promote at once)."""
    paths.models.mkdir(parents=True, exist_ok=True)
    with open(paths.models / f".{CHAMPIONS_FILE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def set_champion(case: str, tag: str, *, metric: str, value: float, lower_is_better: bool,
                 window: Any = None) -> None:
    """Point ``case`` at ``tag``. The deploy step decides (on the same window) and calls this last."""
    paths = Paths.from_env()
    with _locked(paths):
        pointers = _champions(paths)
        pointers[case] = {"tag": tag, "metric": metric, "value": value, "lower_is_better": lower_is_better,
                          "window": window, "promoted_at": datetime.now(UTC).isoformat(timespec="seconds")}
        write_json(pointers, _champions_path(paths))
