"""Start, probe and package a case's BentoML service; shared by the deploy step, tests and benchmarks.

The service runs as ``bentoml serve`` in its own process group on loopback, exactly as an operator would
start it, so what the tests hit is what ships. Convention: ``services/<case>/service.py`` defines the
service class ``CamelCase(case)`` (``ad_click`` -> ``AdClick``). There is no bentofile per case: the
Bento's build config is generated from the case name and its serving packages, pinned from the lock.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.core import registry
from pipelines.core.settings import PROJECT_ROOT, TELEMETRY_OPT_OUT, ConfigError, Paths

HOST = "127.0.0.1"
MODEL_TAG_ENV = "CASEBOOK_MODEL_TAG"
"""Set for a service process to serve that model (a challenger on trial) instead of the case's champion."""
SERVICE_ENV = {"PYTHONOPTIMIZE": "1"}
"""The environment every service process runs with (``running_service``, ``casebook serve``, the Bento).

Feast wraps its classes in typeguard's ``@typechecked``, which re-compiles each one at import: 2.4 s of a
worker's ~6 s start (measured 2026-12-04). In optimized mode typeguard leaves them alone (its documented
behaviour) and a service start takes ~5 s instead of ~7.5 s; nothing on the serving path relies on
``assert``. ``make setup`` compiles the optimized bytecode once, so no worker compiles it at start."""
WORKERS_ENV = "CASEBOOK_SERVICE_WORKERS"
"""Set for a service process to run that many workers instead of ``<case>.serving.workers``."""
READY_TIMEOUT_S = 120.0
STARTUP_FAILED = "Application startup failed"
"""BentoML's log line when the service's ``__init__`` raised; its arbiter then respawns the worker
forever instead of exiting, so this line is the only prompt signal that start-up cannot succeed."""


def service_target(case: str) -> str:
    """The import string ``bentoml serve`` takes for a case."""
    return f"services.{case}.service:{''.join(p.capitalize() for p in case.split('_'))}"


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _tail(path: str, lines: int = 60) -> str:
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the whole group (arbiter and workers), SIGKILL what is left after the grace period."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the process that started it dies (Linux prctl)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_stale(pidfile: Path) -> None:
    """Stop what a run that was killed before it could clean up left serving (its group is in ``pidfile``)."""
    if not pidfile.exists():
        return
    try:
        group = int(pidfile.read_text().split()[0])
        os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            os.killpg(group, 0)
            time.sleep(0.2)
        os.killpg(group, signal.SIGKILL)
    except (ValueError, IndexError, ProcessLookupError, PermissionError):
        pass  # unreadable, or nothing left of it
    pidfile.unlink(missing_ok=True)


@contextmanager
def running_service(case: str, port: int | None = None, *, timeout_s: float = READY_TIMEOUT_S,
                    paths: Paths | None = None, model_tag: str | None = None, log_file: Path | None = None,
                    workers: int | None = None) -> Iterator[str]:
    """Serve ``case`` on 127.0.0.1 for the block; yields the base URL once ``/readyz`` answers 200.

    ``model_tag`` serves that model instead of the champion: the deploy step proves a challenger on a
    real request before it moves the champion pointer. ``workers`` overrides the case's worker count
    (the deploy step's trial needs one, and leaves the other core to the Bento build). The server's
    output goes to ``log_file``, by default ``<home>/run/<case>-service.log`` (kept for a look after a
    failure; the next start replaces it), and its process group to ``<home>/run/<case>-service.pid``
    while it runs.
    """
    import httpx

    paths = paths or Paths.from_env()
    port = port or free_port()
    env = {**TELEMETRY_OPT_OUT, **os.environ, **SERVICE_ENV, "CASEBOOK_HOME": str(paths.home),
           "BENTOML_HOME": str(paths.models)}
    env.pop(MODEL_TAG_ENV, None)
    env.pop(WORKERS_ENV, None)
    if model_tag is not None:
        env[MODEL_TAG_ENV] = model_tag
    if workers is not None:
        env[WORKERS_ENV] = str(workers)
    cmd = [sys.executable, "-m", "bentoml", "serve", service_target(case),
           "--host", HOST, "--port", str(port), "--working-dir", str(PROJECT_ROOT)]
    base_url = f"http://{HOST}:{port}"
    run_dir = paths.home / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    pidfile = run_dir / f"{case}-service.pid"
    stop_stale(pidfile)
    log_path = str(log_file or run_dir / f"{case}-service.log")
    with open(log_path, "wb") as log:
        # A file, not a pipe: a chatty server never blocks on a full pipe nobody reads. Its own process
        # group, told to stop when this process dies (even by SIGKILL): a killed run leaves no server.
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)
    pidfile.write_text(f"{proc.pid} {port}\n")
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"`{' '.join(cmd)}` exited with code {proc.returncode} before it was "
                                   f"ready; last output ({log_path}):\n{_tail(log_path)}")
            if STARTUP_FAILED in _tail(log_path, 400):
                raise RuntimeError(f"{case} service failed to start; last output ({log_path}):\n"
                                   f"{_tail(log_path)}")
            try:
                if httpx.get(f"{base_url}/readyz", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{case} service not ready after {timeout_s:.0f}s; last output "
                                   f"({log_path}):\n{_tail(log_path)}")
            time.sleep(0.25)
        yield base_url
    finally:
        _stop(proc)
        pidfile.unlink(missing_ok=True)


LOCK_FILE = PROJECT_ROOT / "requirements.lock"
SERVING_PACKAGES = ("feast", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml")
"""What the core's serving path imports (online reads, params, the service base); BentoML adds itself."""


def locked_versions(lock: Path = LOCK_FILE) -> dict[str, str]:
    """``name==version`` lines of the lock file by normalised name (PEP 503: ``Foo_Bar`` is ``foo-bar``)."""
    pins = (line.split("#")[0].strip() for line in lock.read_text().splitlines())
    return {_normalise(name): version for name, _, version in (p.partition("==") for p in pins) if version}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def bento_build_config(case: str, packages: Sequence[str], description: str, lock: Path = LOCK_FILE
                       ) -> dict[str, Any]:
    """``bentoml.bentos.build`` arguments for a case: its code, and its packages pinned as the lock pins them.

    ``packages`` are the case's serving distributions beyond ``SERVING_PACKAGES``. ``lock_packages`` is
    off: locking runs ``uv pip compile`` (network) at build time, and the lock already pins the set.
    """
    versions = locked_versions(lock)
    names = list(dict.fromkeys(_normalise(p) for p in (*SERVING_PACKAGES, *packages)))
    missing = [n for n in names if n not in versions]
    if missing:
        raise ConfigError(f"{case}: serving packages {missing} are not pinned in {lock}: add them to "
                          "pyproject.toml, install them and run `make lock`")
    return {
        "service": service_target(case), "name": case, "description": description, "labels": {"case": case},
        # The bento carries code only; the champion and the Feast online store stay under CASEBOOK_HOME
        # (set CASEBOOK_HOME and BENTOML_HOME when serving it).
        "include": ["pipelines/**/*.py", f"services/{case}/*.py", "feature_repo/*.py",
                    "feature_repo/feature_store.yaml", "params.yaml"],
        "exclude": ["**/__pycache__/", "tests/", "data/", "models/"],
        "python": {"packages": [f"{n}=={versions[n]}" for n in names], "lock_packages": False},
        "envs": [{"name": k, "value": v} for k, v in SERVICE_ENV.items()],
    }


def load_service(case: str) -> Any:
    """The case's ``bentoml.Service``, imported from the repository root as ``bentoml serve`` does."""
    if str(PROJECT_ROOT) not in sys.path:  # services/ is not an installed package
        sys.path.insert(0, str(PROJECT_ROOT))
    module, name = service_target(case).split(":")
    return getattr(importlib.import_module(module), name)


def build_bento(case: str, packages: Sequence[str], paths: Paths | None = None) -> str:
    """Package ``services/<case>`` into the local bento store, its build config generated; returns the tag.

    ``packages``: the case's serving distributions beyond ``SERVING_PACKAGES`` (its spec's
    ``serving_packages``); their versions come from the lock. A Bento carries code, not the model (the
    service loads the champion by tag), so one built from the same code and pins is reused, not rebuilt.
    """
    paths = registry.use_home(paths)
    import bentoml

    from pipelines.core.api import service_doc

    config = bento_build_config(case, packages, service_doc(load_service(case)))
    files = _bento_files(config)
    digest = _code_digest(config, files)
    try:
        built = bentoml.bentos.list(case)
    except bentoml.exceptions.NotFound:  # none built yet
        built = []
    for bento in built:
        if bento.info.labels.get("code") == digest:
            return str(bento.tag)
    config["labels"] = {**config["labels"], "code": digest}
    # BentoML walks every file under the build context and matches it against `include`; under the
    # repository that is the .venv and any data (~100k files, 4-5 s). A context holding only the
    # included files gives the same Bento in a fraction of that.
    with tempfile.TemporaryDirectory(prefix=f"bento-{case}-") as ctx:
        for f in files:
            target = Path(ctx) / f.relative_to(PROJECT_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
        # `bentos.build` takes env entries as BentoML's schema objects (a bentofile's are converted for it)
        from bentoml._internal.bento.build_config import BentoEnvSchema

        envs = [BentoEnvSchema(**e) for e in config.pop("envs")]
        bento = bentoml.bentos.build(**config, envs=envs, build_ctx=ctx)
    return str(bento.tag)


def _bento_files(config: dict[str, Any]) -> list[Path]:
    """The files a Bento built from ``config`` carries: its include patterns under the repository."""
    return sorted({p for pattern in config["include"] for p in PROJECT_ROOT.glob(pattern)
                   if p.is_file() and "__pycache__" not in p.parts})


def _code_digest(config: dict[str, Any], files: Sequence[Path]) -> str:
    """Hash of what a Bento would carry: the included files' bytes and the pinned packages."""
    import hashlib

    from pipelines.core.flowset import fingerprint

    blob = fingerprint(files) + "|".join(config["python"]["packages"]) + config["service"]
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
