"""Test harness: one temporary CASEBOOK_HOME and one Prefect test server for the whole session.

Starting Prefect's server and importing Feast cost seconds each, so integration, contract and end-to-end
tests share one tiny run per registered case (``case_run``) instead of paying for it per test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import pipelines.core.flowset  # noqa: F401  (see below)
from pipelines import cases
from pipelines.core.settings import PROJECT_ROOT, apply_privacy_defaults

apply_privacy_defaults()
# Importing Prefect binds its log handlers to the streams of that moment. Doing it here, at collection,
# binds them to the real stderr, not to a CliRunner capture that is closed once its test ends.
import prefect  # noqa: E402, F401

TINY = {"scale": "tiny", "seed": 3, "deploy": {"build": False}, "monitor": {"retrain_on_alarm": False}}
"""Every case's test overrides: the tiny world, no Bento build, no retrain on a drift alarm."""
RUN_STEPS = ("ingest", "validate", "features", "train", "index", "precompute", "evaluate", "deploy")


def tiny_params() -> dict[str, Any]:
    from pipelines.core.params import merged

    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    return {name: merged(params[name], TINY) for name in cases.CASES}


@pytest.fixture(scope="session")
def casebook_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway home with every case's params switched to the tiny world and no Bento build."""
    home = tmp_path_factory.mktemp("casebook")
    (home / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    old = os.environ.get("CASEBOOK_HOME")
    os.environ["CASEBOOK_HOME"] = str(home)
    os.environ["BENTOML_HOME"] = str(home / "models" / "bentoml")
    yield home
    if old is None:
        os.environ.pop("CASEBOOK_HOME", None)
    else:
        os.environ["CASEBOOK_HOME"] = old


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server (SQLite) for every flow run of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def case_run(casebook_home: Path, prefect_server: None) -> Callable[[str], dict[str, Any]]:
    """``case_run(name)``: the case's flow set at tiny scale, ingest through deploy (a real service), once."""
    from pipelines.core.flowset import run_case

    done: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in done:
            done[name] = run_case(cases.spec(name), [s for s in RUN_STEPS if s in cases.spec(name).steps])
        return done[name]

    return get


@pytest.fixture(scope="session")
def ad_click_run(case_run: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return case_run("ad_click")


@pytest.fixture(scope="session")
def video_run(case_run: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return case_run("video_recommendation")
