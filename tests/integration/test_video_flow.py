"""The video_recommendation flow set on real tools and a tiny world: quality, quarantine, real files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines.core.settings import ConfigError, Paths
from pipelines.core.validation import ValidationFailed
from pipelines.video_recommendation.flows import CASE, video_recommendation_flow

pytestmark = pytest.mark.integration
K = 10


def test_two_stage_beats_popularity_and_every_system_is_reported(video_run: dict[str, Any]) -> None:
    metrics = json.loads(Paths.from_env().metrics(CASE).read_text())
    model, popular, oracle = metrics["model"], metrics["baseline"], metrics["oracle"]
    for m in (f"recall@{K}", f"ndcg@{K}"):
        assert model[m] > popular[m] * 1.1, (m, model[m], popular[m])
        assert oracle[m] > popular[m]
    assert set(metrics["systems"]) == {"popular", "trending", "demographic_popular", "als", "two_tower", "ranked",
                                       "two_stage", "oracle"}
    for report in metrics["systems"].values():
        assert 0 <= report[f"precision@{K}"] <= 1 and 0 <= report["coverage"] <= 1
    # Re-ranking caps each category, so the full system's lists are more diverse than popularity's.
    assert model["diversity"] >= popular["diversity"]
    assert metrics["ann"][f"recall@{K}"] >= 0.95
    assert (Paths.from_env().plots(CASE) / "systems.png").stat().st_size > 0


def test_deploy_promoted_the_model_and_the_service_answered(video_run: dict[str, Any]) -> None:
    deploy = video_run["deploy"]
    assert deploy["champion"] == video_run["train"]
    smoke = deploy["smoke_test"]
    assert smoke["known"] and smoke["cold_start"]  # a cold-start user still gets videos


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _real_log(paths: Paths, n_users: int = 400) -> pd.DataFrame:
    """A 'real' rating log shaped like public datasets, cut from the simulated positives and negatives."""
    inter = pd.concat([pd.read_parquet(f) for f in (paths.validated(CASE) / "interactions").glob("*.parquet")])
    inter = inter[inter["clicked"] == 1]
    inter = inter[inter["user_id"] <= inter["user_id"].drop_duplicates().sort_values().iloc[n_users]]
    return pd.DataFrame({"user_id": inter["user_id"], "item_id": inter["video_id"],
                         "timestamp": inter["event_timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "rating": (1 + 4 * inter["watch_fraction"]).round(1)})


def _own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """A real source gets its own home (same params as the session's), so ids never collide."""
    home = tmp_path / "real"
    home.mkdir()
    (home / "params.yaml").write_text((Paths.from_env().home / "params.yaml").read_text())
    monkeypatch.setenv("CASEBOOK_HOME", str(home))
    return Paths.from_env()


def test_a_real_interactions_file_runs_through_the_same_flows(video_run: dict[str, Any], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    log = _write(_real_log(Paths.from_env()), tmp_path / "ratings.csv")
    _own_home(tmp_path, monkeypatch)
    out = video_recommendation_flow(steps=["ingest", "validate", "features", "train", "evaluate"],
                                    interactions=log)
    assert out["ingest"].startswith("file-")
    metrics = json.loads(Paths.from_env().metrics(CASE).read_text())
    assert "oracle" not in metrics  # no known truth behind real data
    assert metrics["model"]["users"] > 0 and metrics["model"][f"recall@{K}"] > 0
    lineage = json.loads((Paths.from_env().work(CASE) / "challenger.json").read_text())["lineage"]
    assert lineage["source"] == "file"


def test_a_bad_file_is_quarantined_and_good_data_is_untouched(video_run: dict[str, Any], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    good = _real_log(Paths.from_env(), n_users=100)
    paths = _own_home(tmp_path, monkeypatch)
    video_recommendation_flow(steps=["ingest", "validate"], interactions=_write(good, tmp_path / "good.parquet"))
    validated = {p: _digest(p) for p in paths.validated(CASE).rglob("*.parquet")}
    bad = good.copy()
    bad.loc[bad.index[:3], "user_id"] = -7  # ids are positive
    with pytest.raises(ValidationFailed) as err:
        video_recommendation_flow(steps=["ingest", "validate"], interactions=_write(bad, tmp_path / "bad.parquet"))
    assert "user_id" in str(err.value)
    assert list(paths.quarantine(CASE).rglob("*.json"))
    assert {p: _digest(p) for p in paths.validated(CASE).rglob("*.parquet")} == validated


def test_file_and_simulator_never_share_a_home(video_run: dict[str, Any], tmp_path: Path) -> None:
    log = _write(_real_log(Paths.from_env(), n_users=50), tmp_path / "log.csv")
    with pytest.raises(ConfigError, match="own home"):
        video_recommendation_flow(steps=["ingest"], interactions=log)


def test_monitor_raises_the_alarm_on_drift_only(video_run: dict[str, Any]) -> None:
    calm = video_recommendation_flow(steps=["monitor"], drift=0.0)["monitor"]
    moved = video_recommendation_flow(steps=["monitor"], drift=1.0)["monitor"]
    assert moved["drift_share"] > calm["drift_share"]
    assert moved["alarm"] and not calm["alarm"]
    assert Path(moved["html_path"]).exists()
