"""The video_recommendation flow set on real tools and a tiny world: quality, quarantine, real files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines import cases
from pipelines.cli import _print_report
from pipelines.core.flowset import open_run, run_case
from pipelines.core.settings import Paths
from pipelines.core.validation import ValidationFailed

pytestmark = pytest.mark.integration
CASE = "video_recommendation"
K = 10


def video_recommendation_flow(steps: list[str], **kwargs: Any) -> dict[str, Any]:
    files = {k: kwargs.pop(k) for k in ("interactions", "items") if k in kwargs}
    return run_case(cases.spec(CASE), steps, files=files, **kwargs)


def test_two_stage_beats_popularity_and_every_system_is_reported(video_run: dict[str, Any]) -> None:
    metrics = json.loads(Paths.from_env().metrics(CASE).read_text())
    model, popular, oracle = metrics["model"], metrics["baseline"], metrics["oracle"]
    for m in (f"recall@{K}", f"ndcg@{K}"):
        assert model[m] > popular[m] * 1.1, (m, model[m], popular[m])
        assert oracle[m] > popular[m]
    assert set(metrics["systems"]) == {"popular", "trending", "demographic_popular", "als", "two_tower", "co_visit",
                                       "ranked", "two_stage", "oracle"}
    for report in metrics["systems"].values():
        assert 0 <= report[f"precision@{K}"] <= 1 and 0 <= report["coverage"] <= 1
    # Re-ranking caps each category, so the served lists are more diverse than the ranker's own.
    assert model["diversity"] > metrics["systems"]["ranked"]["diversity"]
    assert metrics["index"][f"recall@{K}"] >= 0.95
    assert (Paths.from_env().plots(CASE) / "systems.png").stat().st_size > 0


def test_deploy_promoted_the_model_and_the_service_answered(video_run: dict[str, Any]) -> None:
    deploy = video_run["deploy"]
    assert deploy["champion"] == video_run["evaluate"]["model_tag"]
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


def test_a_real_interactions_file_runs_through_the_same_flows(video_run: dict[str, Any], tmp_path: Path) -> None:
    simulator = Paths.from_env().metrics(CASE).read_bytes()
    log = _write(_real_log(Paths.from_env()), tmp_path / "ratings.csv")
    out = video_recommendation_flow(steps=["ingest", "validate", "features", "train", "index", "evaluate"],
                                    interactions=log)
    assert out["ingest"].startswith("file-")
    # The file source gets a home of its own automatically; the simulator's results stay as they were.
    run = open_run(cases.spec(CASE), files={"interactions": log})
    assert run.world.source == "file" and run.paths.home == Paths.from_env().home / "worlds" / "file"
    assert Paths.from_env().metrics(CASE).read_bytes() == simulator
    metrics = json.loads(run.paths.metrics(CASE).read_text())
    assert "oracle" not in metrics  # no known truth behind real data
    assert metrics["model"]["users"] > 0 and metrics["model"][f"recall@{K}"] > 0
    lineage = json.loads((run.paths.work(CASE) / "artifacts" / "lineage.json").read_text())
    assert lineage["source"] == "file"


def test_a_bad_file_is_quarantined_and_good_data_is_untouched(video_run: dict[str, Any], tmp_path: Path) -> None:
    good = _real_log(Paths.from_env(), n_users=100)
    good_file = _write(good, tmp_path / "good.parquet")
    video_recommendation_flow(steps=["ingest", "validate"], interactions=good_file)
    paths = open_run(cases.spec(CASE), files={"interactions": good_file}).paths
    validated = {p: _digest(p) for p in paths.validated(CASE).rglob("*.parquet")}
    bad = good.copy()
    bad.loc[bad.index[:3], "user_id"] = -7  # ids are positive
    with pytest.raises(ValidationFailed) as err:
        video_recommendation_flow(steps=["ingest", "validate"], interactions=_write(bad, tmp_path / "bad.parquet"))
    assert "user_id" in str(err.value)
    assert list(paths.quarantine(CASE).rglob("*.json"))
    assert {p: _digest(p) for p in paths.validated(CASE).rglob("*.parquet")} == validated


def _bursty_event_log(paths: Paths, n_users: int = 400, cohorts: int = 6, gap_days: int = 10) -> pd.DataFrame:
    """An event log (every impression, ``watch`` where the user engaged) whose users arrive in cohorts
    ``gap_days`` apart, as users of public logs do: cut from the simulated impressions, then moved in time."""
    inter = pd.concat([pd.read_parquet(f) for f in (paths.validated(CASE) / "interactions").glob("*.parquet")])
    inter = inter[inter["user_id"] <= inter["user_id"].drop_duplicates().sort_values().iloc[n_users]]
    shift = pd.to_timedelta((inter["user_id"] % cohorts) * gap_days, unit="D")
    return pd.DataFrame({"user_id": inter["user_id"], "item_id": inter["video_id"],
                         "timestamp": (inter["event_timestamp"] + shift).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "event": inter["positive"].map({1: "watch", 0: "impression"})})


def test_a_per_user_holdout_tests_far_more_users_of_a_bursty_log(video_run: dict[str, Any], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A file defaults to the per-user holdout; on a log whose users arrive in bursts, a global cut tests only
    the last cohort. The metrics file and the report say which split and how much it covers."""
    log = _write(_bursty_event_log(Paths.from_env()), tmp_path / "bursty.csv")
    steps = ["ingest", "validate", "features", "train", "index", "evaluate"]
    covered = {}
    for kind in ("per_user", "global"):
        monkeypatch.setenv("CASEBOOK_HOME", str(tmp_path / kind))
        video_recommendation_flow(steps, interactions=log, **({"settings": {"split": {"kind": kind}}}
                                                               if kind == "global" else {}))
        run = open_run(cases.spec(CASE), files={"interactions": log})
        metrics = json.loads(run.paths.metrics(CASE).read_text())
        assert metrics["split"]["kind"] == kind and metrics["notes"][0].startswith(f"split: {kind}")
        covered[kind] = metrics["split"]["test"]
        assert 0 < metrics["model"]["users"] <= covered[kind]["users"]
        if kind == "per_user":  # enough users for the interval to stand on all of them
            assert metrics["lift_interval"][f"ndcg@{K}"]["units"] == metrics["model"]["users"]
        lineage = json.loads((run.paths.work(CASE) / "artifacts" / "lineage.json").read_text())
        assert lineage["split"]["test"] == covered[kind]
        _print_report(CASE, files={"interactions": log})  # `casebook report`: the split under the table
        assert f"split: {kind}" in capsys.readouterr().out
    assert covered["per_user"]["users"] > 3 * covered["global"]["users"], covered
    assert covered["per_user"]["interactions"] > covered["global"]["interactions"], covered


@pytest.mark.parametrize("year", [1997, 2091])
def test_a_log_of_any_era_runs_to_the_online_store(video_run: dict[str, Any], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, year: int) -> None:
    """The materialization window comes from the data: a 1990s log and one from the future both load."""
    from pipelines.core import feast

    log = _real_log(Paths.from_env(), n_users=80)  # cut from the session's world, then moved in time
    monkeypatch.setenv("CASEBOOK_HOME", str(tmp_path / str(year)))
    shift = pd.Timestamp(f"{year}-03-01", tz="UTC") - pd.Timestamp("2026-01-01", tz="UTC")
    log["timestamp"] = (pd.to_datetime(log["timestamp"], utc=True) + shift).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out = video_recommendation_flow(steps=["ingest", "validate", "features"],
                                    interactions=_write(log, tmp_path / f"log-{year}.csv"))
    assert out["features"]["online"]["from"].startswith(str(year))
    run = open_run(cases.spec(CASE), files={"interactions": tmp_path / f"log-{year}.csv"})
    user = int(log["user_id"].iloc[0])
    got = feast.store(run.paths).get_online_features(
        features=["user_video_engagement:viewer_impressions"], entity_rows=[{"user_id": user}]).to_dict()
    assert got["viewer_impressions"][0] is not None


def test_a_rejected_file_does_not_claim_the_home(video_run: dict[str, Any], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A home is claimed by its first *validated* batch: a bad file leaves it free for the simulator."""
    bad = _real_log(Paths.from_env(), n_users=50)
    bad.loc[bad.index[:3], "user_id"] = -7
    home = tmp_path / "home"
    monkeypatch.setenv("CASEBOOK_HOME", str(home))
    with pytest.raises(ValidationFailed):
        video_recommendation_flow(steps=["ingest", "validate"], interactions=_write(bad, tmp_path / "bad.csv"))
    assert not (home / "data" / "world.json").exists()
    assert open_run(cases.spec(CASE)).paths.home == home.resolve()  # the simulator still gets this home
