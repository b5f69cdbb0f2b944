"""Drift monitoring against a real Evidently on small synthetic windows.

One module-scoped workspace receives a stable and a shifted report for the same case, so the tests also
check that the case's Evidently project is created once and reused.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.core.monitoring import (
    MAX_ROWS,
    DriftResult,
    DriftThresholds,
    _limit_rows,
    drift_report,
    project_name,
)
from pipelines.core.settings import PROJECT_ROOT, ConfigError

pytestmark = pytest.mark.integration

CASE = "drift_test"
NUMERICAL = ["n0", "n1", "n2", "n3", "n4", "n5"]
CATEGORICAL = ["c0", "c1"]
SHIFTED = ["n0", "n1", "n2", "c0"]
N = 2000


def make_window(seed: int, *, shifted: bool = False, n: int = N) -> pd.DataFrame:
    """Model inputs, a probability from a fixed 'model', and labels drawn from that probability."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({c: rng.normal(0.0, 1.0, n) for c in NUMERICAL})
    if shifted:
        df[["n0", "n1", "n2"]] += 1.5
    df["c0"] = rng.choice(["a", "b", "c"], n, p=[0.15, 0.25, 0.6] if shifted else [0.6, 0.25, 0.15])
    df["c1"] = rng.choice(["x", "y"], n, p=[0.7, 0.3])
    logit = 0.9 * df["n3"] - 0.6 * df["n4"] + 0.4 * (df["c1"] == "y") + (2.0 if shifted else 0.0)
    df["score"] = 1.0 / (1.0 + np.exp(-logit))
    df["label"] = (rng.random(n) < df["score"]).astype(int)
    return df


def _run(reference: pd.DataFrame, current: pd.DataFrame, root: Path, **overrides: object) -> DriftResult:
    kwargs: dict = {
        "numerical": NUMERICAL,
        "categorical": CATEGORICAL,
        "prediction": "score",
        "target": "label",
        "thresholds": DriftThresholds(),
        "workspace": root / "workspace",
        "html_dir": root / "reports",
        "tags": ["test"],
    }
    kwargs.update(overrides)
    return drift_report(CASE, reference, current, **kwargs)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DriftResult, DriftResult]:
    """Stable then shifted window into one workspace, with every outbound connection refused."""
    root = tmp_path_factory.mktemp("monitoring")
    real_connect = socket.socket.connect

    def local_only(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"outbound connection attempted to {address!r}")
        real_connect(self, address)  # type: ignore[arg-type]

    reference = make_window(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", local_only)
        stable = _run(reference, make_window(2), root)
        shifted = _run(reference, make_window(3, shifted=True), root)
    return root, stable, shifted


def test_same_distribution_does_not_alarm(reports: tuple[Path, DriftResult, DriftResult]) -> None:
    _, stable, _ = reports
    assert stable.alarm is False
    assert stable.drift_share <= 1 / len(NUMERICAL + CATEGORICAL)
    assert not stable.prediction_drifted
    assert stable.prediction_drift_score is not None
    assert {"roc_auc", "log_loss", "accuracy"} <= stable.quality.keys()
    assert 0.5 < stable.quality["roc_auc"] <= 1.0


def test_shifted_window_alarms_and_is_stored(reports: tuple[Path, DriftResult, DriftResult]) -> None:
    from evidently.ui.workspace import Workspace

    root, stable, shifted = reports
    assert shifted.alarm is True
    assert set(SHIFTED) <= set(shifted.drifted_columns)
    assert shifted.drift_share >= len(SHIFTED) / len(NUMERICAL + CATEGORICAL)
    assert shifted.prediction_drifted is True

    # A fresh handle on the workspace sees one project for the case holding both snapshots.
    ws = Workspace(str(root / "workspace"))
    projects = [p for p in ws.list_projects() if p is not None and p.name == project_name(CASE)]
    assert len(projects) == 1
    runs = {str(r) for r in ws.list_runs(projects[0].id)}
    assert {stable.snapshot_id, shifted.snapshot_id} <= runs
    stored = ws.get_run(projects[0].id, uuid.UUID(shifted.snapshot_id))
    assert stored is not None and "test" in stored.tags

    html = Path(shifted.html_path)
    assert html.parent == root / "reports" and html.suffix == ".html"
    assert html.stat().st_size > 10_000
    assert not [p for p in html.parent.iterdir() if ".tmp-" in p.name]  # no temp file left behind
    assert shifted.to_dict()["drifted_columns"] == shifted.drifted_columns


@pytest.mark.parametrize("frame", ["reference", "current"])
def test_missing_column_is_named(tmp_path: Path, frame: str) -> None:
    reference, current = make_window(1, n=100), make_window(2, n=100)
    if frame == "reference":
        reference = reference.drop(columns=["n4"])
    else:
        current = current.drop(columns=["n4"])
    with pytest.raises(ValueError, match=rf"{frame} frame is missing column\(s\): \['n4'\]"):
        _run(reference, current, tmp_path)
    assert not (tmp_path / "workspace").exists()  # rejected before anything was written


def test_empty_frame_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="current frame is empty"):
        _run(make_window(1, n=100), make_window(2, n=100).iloc[0:0], tmp_path)


def test_thresholds_validate_params() -> None:
    with pytest.raises(ConfigError, match="drift_share"):
        DriftThresholds.from_params({"drift_share": 2})
    with pytest.raises(ConfigError, match="drift_shares"):
        DriftThresholds.from_params({"drift_shares": 0.2})
    with pytest.raises(ConfigError, match="prediction_drift"):
        DriftThresholds.from_params({"prediction_drift": "yes"})
    assert DriftThresholds.from_params({"drift_share": 0.5, "prediction_drift": False}) == DriftThresholds(
        0.5, False
    )
    with pytest.raises(ConfigError, match="'num_threshold' needs 'num_method'"):
        DriftThresholds.from_params({"num_threshold": 0.2})  # a distance or a p-value? depends on the test
    with pytest.raises(ConfigError, match="cat_threshold"):
        DriftThresholds.from_params({"cat_method": "jensenshannon", "cat_threshold": -1})
    with pytest.raises(ConfigError, match="num_method"):
        DriftThresholds.from_params({"num_method": 3})


def test_configured_stat_tests_decide_the_verdicts(tmp_path: Path) -> None:
    """A fixed test and threshold from config: a shift of 0.3 std drifts at 0.1 and not at 0.5 (normed
    Wasserstein), and a stat test name Evidently does not know is a config error naming the key."""
    reference, current = make_window(1), make_window(2)
    current[["n0", "n1"]] += 0.3
    strict = DriftThresholds(drift_share=0.2, num_method="wasserstein", num_threshold=0.1)
    lenient = DriftThresholds(drift_share=0.2, num_method="wasserstein", num_threshold=0.5)
    assert {"n0", "n1"} <= set(_run(reference, current, tmp_path, thresholds=strict).drifted_columns)
    assert not {"n0", "n1"} & set(_run(reference, current, tmp_path, thresholds=lenient).drifted_columns)
    with pytest.raises(ConfigError, match="drift thresholds of drift_test: No stattest found of name wasserstien"):
        _run(reference, current, tmp_path, thresholds=DriftThresholds(num_method="wasserstien"))


def test_large_frames_are_sampled_deterministically() -> None:
    big = pd.DataFrame({"a": np.arange(MAX_ROWS + 10)})
    first, second = _limit_rows(big), _limit_rows(big)
    assert len(first) == MAX_ROWS
    assert first.equals(second)


def test_import_stays_cheap() -> None:
    code = "import sys, pipelines.core.monitoring; sys.exit('evidently' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT).returncode == 0
