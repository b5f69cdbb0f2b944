"""harmful_content's flow at tiny scale: the real tools, the case's own outcomes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines import cases
from pipelines.core.flowset import call, open_run, run_case
from pipelines.core.review import ReviewQueue
from pipelines.core.settings import Paths

pytestmark = pytest.mark.integration
CASE = "harmful_content"


def test_the_fusion_model_beats_the_text_baseline(case_run: Callable[[str], dict[str, Any]]) -> None:
    case_run(CASE)
    m = json.loads(Paths.from_env().metrics(CASE).read_text())
    assert m["model"]["macro_pr_auc"] > 1.1 * m["baseline"]["macro_pr_auc"]
    assert m["oracle"]["macro_pr_auc"] > m["model"]["macro_pr_auc"]
    assert set(m["enforcement"]) == {"violence", "nudity", "hate", "spam"}
    for c, e in m["enforcement"].items():
        assert 0 < e["review_threshold"] <= e["remove_threshold"], c
    assert 0 <= m["proactive_rate"] <= 1 and m["prevalence"]["spam"]["true"] > 0
    assert (Paths.from_env().plots(CASE) / "pr_curves.png").exists()


def test_a_human_label_from_the_queue_reaches_the_next_training_set(case_run: Callable[[str], dict[str, Any]]
                                                                   ) -> None:
    case_run(CASE)
    run = open_run(cases.spec(CASE))
    lineage = json.loads((run.work("artifacts") / "lineage.json").read_text())
    train = pd.read_parquet(run.work("artifacts") / "train_labels.parquet")
    post = int(train.loc[train["hate"] == 0, "post_id"].iloc[0])
    queue = ReviewQueue.of(run.paths, CASE)
    queue.enqueue(post, "hate >= 0.01", {c: 0.5 for c in lineage["classes"]}, {"text": "?"})
    queue.label(post, {"hate": 1})
    try:
        call(run, "train")  # keyed on the labels file: a new label retrains
        relabeled = pd.read_parquet(run.work("artifacts") / "train_labels.parquet").set_index("post_id")
        assert relabeled.loc[post, "hate"] == 1
        assert json.loads((run.work("artifacts") / "lineage.json").read_text())["human_labels_from_review"] >= 1
    finally:
        queue.labels_path.unlink()
        call(run, "train")  # back to the session's training set for the other tests


def test_a_file_of_posts_runs_the_same_flow(tmp_path: Path, case_run: Callable[[str], dict[str, Any]]) -> None:
    case_run(CASE)
    rng = np.random.default_rng(0)
    n = 1500
    scam = rng.random(n) < 0.08
    text = np.where(scam, "win free money click here now", "lunch with friends at the park")
    words = rng.choice(["sun", "rain", "game", "dog", "mon3y", "fr33"], n)
    f = tmp_path / "posts.csv"
    created = pd.Timestamp("2025-03-01", tz="Europe/Paris") + pd.to_timedelta(np.arange(n) * 600, unit="s")
    pd.DataFrame({"post_id": np.arange(1, n + 1), "author_id": rng.integers(1, 200, n),
                  "created_at": created.strftime("%Y-%m-%d %H:%M:%S%z"),  # local time with an offset, no "T"
                  "text": [f"{t} {w}" for t, w in zip(text, words, strict=True)],
                  "views": rng.poisson(30, n), "followers": rng.poisson(100, n),  # optional counts, no likes
                  "scam": scam.astype(int), "toxic": (rng.random(n) < 0.05).astype(int)}).to_csv(f, index=False)
    out = run_case(cases.spec(CASE), ["ingest", "validate", "features", "train", "evaluate"], files={"posts": f})
    assert out["evaluate"]["macro_pr_auc"] > 0
    run = open_run(cases.spec(CASE), files={"posts": f})
    m = json.loads(run.paths.metrics(CASE).read_text())
    assert set(m["enforcement"]) == {"scam", "toxic"} and "oracle" not in m
    assert m["model"]["pr_auc_scam"] > 0.9  # the file's obvious class is learned
