"""Test harness: one temporary CASEBOOK_HOME and one Prefect test server for the whole session.

Starting Prefect's server and importing Feast cost seconds each, so integration and end-to-end tests
share one tiny run per case (``ad_click_run``, ``video_run``) instead of paying for it per test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import pipelines.ad_click.flows  # noqa: F401  (see below)
from pipelines.core.settings import PROJECT_ROOT, apply_privacy_defaults

apply_privacy_defaults()
# Importing Prefect binds its log handlers to the streams of that moment. Doing it here, at collection,
# binds them to the real stderr, not to a CliRunner capture that is closed once its test ends.


@pytest.fixture(scope="session")
def casebook_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway home with params.yaml switched to the tiny world and no Bento build."""
    home = tmp_path_factory.mktemp("casebook")
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["ad_click"]["scale"] = "tiny"
    params["ad_click"]["seed"] = 3
    params["ad_click"]["deploy"]["build"] = False
    params["ad_click"]["monitor"]["retrain_on_alarm"] = False
    video = params["video_recommendation"]
    video.update(scale="tiny", seed=3)
    video["deploy"]["build"] = False
    video["monitor"]["retrain_on_alarm"] = False
    (home / "params.yaml").write_text(yaml.safe_dump(params))
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
def ad_click_run(casebook_home: Path, prefect_server: None) -> dict[str, Any]:
    """The whole ad_click flow set at tiny scale, once: ingest through deploy (with a real service)."""
    from pipelines.ad_click.flows import ad_click_flow

    return ad_click_flow(steps=["ingest", "validate", "features", "train", "evaluate", "deploy"])


@pytest.fixture(scope="session")
def video_run(casebook_home: Path, prefect_server: None) -> dict[str, Any]:
    """The whole video_recommendation flow set at tiny scale, once: ingest through deploy."""
    from pipelines.video_recommendation.flows import video_recommendation_flow

    return video_recommendation_flow(steps=["ingest", "validate", "features", "train", "evaluate", "deploy"])
