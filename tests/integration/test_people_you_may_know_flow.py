"""people_you_may_know end to end on the tiny world: the GNN beats the heuristics it is given, the batch
step's lists are clean, the monitor's own feature path equals Feast's, and a file of edges runs the same
flows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines import cases
from pipelines.core.flowset import open_run, run_case
from pipelines.core.settings import Paths
from pipelines.people_you_may_know import pipeline
from pipelines.people_you_may_know.features import tables

pytestmark = pytest.mark.integration
CASE = "people_you_may_know"


@pytest.fixture(scope="module")
def pymk_run(case_run: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return case_run(CASE)


def test_the_gnn_beats_mutual_friends_and_every_system_is_reported(pymk_run: dict[str, Any]) -> None:
    metrics = json.loads(Paths.from_env().metrics(CASE).read_text())
    systems = metrics["systems"]
    assert set(systems) == {"model", "adamic_adar", "mutual_friends", "oracle"}
    assert systems["model"]["map@10"] > systems["mutual_friends"]["map@10"]
    assert systems["oracle"]["roc_auc"] > systems["mutual_friends"]["roc_auc"]
    assert all(s["users"] == metrics["coverage"]["test users"] > 100 for s in systems.values())
    assert 0 < metrics["coverage"]["candidate recall"] < 1


def test_the_precomputed_lists_hold_no_friend_self_or_blocked_pair(pymk_run: dict[str, Any]) -> None:
    run = open_run(cases.spec(CASE))
    summary = pymk_run["precompute"]
    assert summary["users_with_list"] > 100
    with sqlite3.connect(run.work(pipeline.STORE)) as db:
        recs = pd.read_sql("SELECT user_id, candidate_id FROM recommendations WHERE list_id = ?", db,
                           params=(summary["list_id"],))
        blocked = pd.read_sql("SELECT user_id, other_id FROM blocked WHERE list_id = ?", db,
                              params=(summary["list_id"],))
    fr = run.validated("friendships")
    friends = set(zip(fr["user_id"], fr["friend_id"], strict=True)) | set(zip(fr["friend_id"], fr["user_id"],
                                                                              strict=True))
    pairs = set(zip(recs["user_id"], recs["candidate_id"], strict=True))
    assert len(blocked) and not pairs & friends and not pairs & set(zip(blocked["user_id"], blocked["other_id"],
                                                                        strict=True))
    assert (recs["user_id"] != recs["candidate_id"]).all()
    assert recs.groupby("user_id").size().max() <= run.params.precompute.k


def test_the_monitors_node_features_equal_feasts(pymk_run: dict[str, Any]) -> None:
    run = open_run(cases.spec(CASE))
    fr, req = run.validated("friendships"), run.validated("friend_requests")
    end = pipeline.Cut.of(fr, run.params.split.label_days).end
    feast_nodes = pipeline.snapshot(run, end, fr, req).nodes
    local = pipeline.local_nodes(tables(fr, req, run.validated("affiliations"), run.validated("users")),
                                 run.validated("users"), fr, end)
    pd.testing.assert_frame_equal(feast_nodes.reset_index(drop=True), local.reset_index(drop=True),
                                  check_dtype=False)


def test_a_file_of_edges_runs_through_the_same_flows(pymk_run: dict[str, Any], tmp_path: Path) -> None:
    sim = open_run(cases.spec(CASE))
    fr = sim.validated("friendships")
    edges = pd.DataFrame({"src": fr["friend_id"], "dst": fr["user_id"], "timestamp": fr["created_ts"].astype(str)})
    edges = pd.concat([edges, edges.head(40), pd.DataFrame({"src": [5, 6], "dst": [5, 6],
                                                            "timestamp": ["2026-01-02T00:00:00Z"] * 2})])
    edges.to_csv(tmp_path / "edges.csv", index=False)
    users = sim.validated("users")
    pd.DataFrame({"user_id": users["user_id"], "age": users["age"]}).to_csv(tmp_path / "nodes.csv", index=False)
    files = {"edges": tmp_path / "edges.csv", "nodes": tmp_path / "nodes.csv"}
    out = run_case(cases.spec(CASE), ["ingest", "validate", "features", "train", "precompute", "evaluate"],
                   files=files)
    assert out["ingest"].startswith("file-")
    run = open_run(cases.spec(CASE), files=files)
    assert run.world.source == "file"
    metrics = json.loads(run.paths.metrics(CASE).read_text())
    assert "oracle" not in metrics["systems"] and metrics["model"]["users"] > 0
    lineage = json.loads((run.work("artifacts") / "lineage.json").read_text())
    assert lineage["edges_file"] == {"rows": len(fr) + 42, "self_edges": 2, "repeated_edges": 40,
                                     "friendships": len(fr)}
    assert np.isfinite(metrics["model"]["roc_auc"])
