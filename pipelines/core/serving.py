"""Start, probe and package a case's BentoML service; shared by the deploy step, tests and benchmarks.

The service runs as ``bentoml serve`` in its own process group on loopback, exactly as an operator would
start it, so what the tests hit is what ships. Convention: ``services/<case>/service.py`` defines the
service class ``CamelCase(case)`` (``ad_click`` -> ``AdClick``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pipelines.core import registry
from pipelines.core.settings import PROJECT_ROOT, TELEMETRY_OPT_OUT, Paths

HOST = "127.0.0.1"
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


@contextmanager
def running_service(case: str, port: int | None = None, *, timeout_s: float = READY_TIMEOUT_S,
                    paths: Paths | None = None) -> Iterator[str]:
    """Serve ``case`` on 127.0.0.1 for the block; yields the base URL once ``/readyz`` answers 200."""
    import httpx

    paths = paths or Paths.from_env()
    port = port or free_port()
    env = {**TELEMETRY_OPT_OUT, **os.environ, "CASEBOOK_HOME": str(paths.home),
           "BENTOML_HOME": str(paths.models)}
    cmd = [sys.executable, "-m", "bentoml", "serve", service_target(case),
           "--host", HOST, "--port", str(port), "--working-dir", str(PROJECT_ROOT)]
    base_url = f"http://{HOST}:{port}"
    with tempfile.NamedTemporaryFile(prefix=f"casebook-{case}-serve-", suffix=".log", delete=False) as log:
        log_path = log.name
        # A file, not a pipe: a chatty server never blocks on a full pipe nobody reads.
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
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
    os.unlink(log_path)


def build_bento(case: str, paths: Paths | None = None) -> str:
    """Package ``services/<case>`` with its bentofile into the local bento store; returns the bento tag."""
    paths = registry.use_home(paths)
    import bentoml

    bentofile = PROJECT_ROOT / "services" / case / "bentofile.yaml"
    bento = bentoml.bentos.build_bentofile(str(bentofile), build_ctx=str(PROJECT_ROOT))
    return str(bento.tag)
