"""The ad_click flow set on real Prefect, GX, Feast, BentoML and Evidently with a tiny world.

The mechanics every case shares (quarantine, resume, promotion, monitoring) are in tests/contract.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipelines.core.settings import Paths

pytestmark = pytest.mark.integration
CASE = "ad_click"


def test_model_beats_baseline_and_metrics_are_written(ad_click_run: dict[str, Any]) -> None:
    metrics = json.loads(Paths.from_env().metrics(CASE).read_text())
    assert metrics["model"]["ne"] < metrics["baseline"]["ne"] < 1.0
    assert metrics["oracle"]["ne"] < metrics["model"]["ne"]  # nothing beats the truth
    assert metrics["coverage"]["impressions"] > 1000
    assert (Paths.from_env().plots(CASE) / "calibration.png").stat().st_size > 1000


def test_deploy_promoted_and_the_service_answered(ad_click_run: dict[str, Any]) -> None:
    deploy = ad_click_run["deploy"]
    assert deploy["promoted"] is True
    assert deploy["champion"] == deploy["challenger"] == ad_click_run["evaluate"]["model_tag"]
    smoke = deploy["smoke_test"]
    assert smoke["status"] == 200 and smoke["known"] and smoke["cold_start"]
