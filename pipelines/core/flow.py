"""Flow building blocks: the step task decorator and the resume-after-crash cache every step uses.

A step reads files and writes files under ``Paths``. Its Prefect cache key is the hash of its parameters
and of the files it reads; when it finishes it writes a manifest of the files it wrote. A rerun with the
same inputs whose outputs still match their manifest is served from the cache; a step that crashed
never wrote its manifest (or result) and runs again; deleted or edited outputs run it again too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from pipelines.core.io import write_json
from pipelines.core.settings import Paths

F = TypeVar("F", bound=Callable[..., Any])
STEPS = ("ingest", "validate", "features", "train", "evaluate", "deploy", "monitor")


def fingerprint(roots: Iterable[Path]) -> str:
    """Hash of every file's path, size and mtime under ``roots`` (temp files ignored)."""
    h = hashlib.sha256()
    for root in roots:
        files = sorted(p for p in root.rglob("*") if p.is_file() and ".tmp-" not in p.name) if root.is_dir() else (
            [root] if root.is_file() else [])
        for f in files:
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def manifest_path(paths: Paths, case: str, step: str) -> Path:
    return paths.work(case) / "manifests" / f"{step}.json"


def record_outputs(paths: Paths, case: str, step: str, writes: list[Path]) -> None:
    """Called at the very end of a step: its outputs are complete and consistent."""
    write_json({"writes": [str(p) for p in writes], "fingerprint": fingerprint(writes)},
               manifest_path(paths, case, step))


def outputs_intact(paths: Paths, case: str, step: str) -> bool:
    m = manifest_path(paths, case, step)
    if not m.exists():
        return False
    doc = json.loads(m.read_text())
    return fingerprint(Path(p) for p in doc["writes"]) == doc["fingerprint"]


def code_fingerprint(case: str) -> str:
    """Hash of the source of the shared core and of the case's package: edited code is not served stale."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted([*(package / "core").glob("*.py"), *(package / case).glob("*.py")]):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def step_cache_key(case: str, step: str, reads: Callable[[Paths], list[Path]]) -> Callable[..., str]:
    """A Prefect ``cache_key_fn``: the step's parameters, the files it reads and the code decide."""

    def key(_context: Any, parameters: dict[str, Any]) -> str:
        paths = Paths.from_env()
        blob = json.dumps({"case": case, "step": step, "params": parameters, "home": str(paths.home),
                           "reads": fingerprint(reads(paths)), "code": code_fingerprint(case)},
                          sort_keys=True, default=str)
        return f"casebook-{case}-{step}-" + hashlib.sha256(blob.encode()).hexdigest()[:32]

    return key


def step(case: str, name: str, reads: Callable[[Paths], list[Path]], retries: int = 0) -> Callable[[F], F]:
    """Wrap a step function as a Prefect task with the resume cache and optional retries for flaky I/O."""
    from prefect import task

    def wrap(fn: F) -> F:
        return task(name=f"{case}.{name}", cache_key_fn=step_cache_key(case, name, reads),
                    persist_result=True, retries=retries, retry_delay_seconds=2)(fn)  # type: ignore[return-value]

    return wrap


def run_step(task: Any, case: str, name: str, **params: Any) -> Any:
    """Call a step; a step whose outputs are missing or changed since it last finished runs again."""
    paths = Paths.from_env()
    return task.with_options(refresh_cache=not outputs_intact(paths, case, name))(**params)


def submit_step(task: Any, case: str, name: str, **params: Any) -> Any:
    """``run_step`` in the background (Prefect's thread pool); returns the future to wait on."""
    paths = Paths.from_env()
    return task.with_options(refresh_cache=not outputs_intact(paths, case, name)).submit(**params)


def background_runner() -> Any:
    """The task runner for ``submit_step``: one worker process.

    A process, not a thread: Feast's DuckDB offline store shares one connection per process, so a
    materialization reading it from a thread races the training step's point-in-time join.
    """
    from prefect.task_runners import ProcessPoolTaskRunner

    return ProcessPoolTaskRunner(max_workers=1)
