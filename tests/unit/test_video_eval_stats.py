"""The video case's evaluation statistics: a bootstrap lift interval over users, per-user ranking rows, and
efSearch tuned from measured ANN recall (the core helpers it calls)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.core.ann import AnnIndex, HnswParams, exact_search, recall_at_k
from pipelines.core.metrics import bootstrap_lift
from pipelines.core.ranking import METRICS, per_user_scores, ranking_report


def test_bootstrap_lift_interval_separates_a_real_lift_from_noise() -> None:
    rng = np.random.default_rng(3)
    base = rng.random(400)
    clear = bootstrap_lift(base * 1.25 + rng.normal(0, 0.05, 400), base)
    assert clear["low"] > 0.15 and clear["high"] < 0.35 and clear["units"] == 400
    noise = bootstrap_lift(rng.random(15), rng.random(15))
    assert noise["low"] < 0 < noise["high"], "15 users of noise must not claim a lift"
    assert bootstrap_lift(base * 1.25, base, seed=1) == bootstrap_lift(base * 1.25, base, seed=1)


def test_bootstrap_lift_rejects_unpaired_input() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        bootstrap_lift(np.ones(3), np.ones(4))


def test_per_user_scores_average_to_the_report() -> None:
    recommended = {1: [5, 6, 7], 2: [7, 8, 9], 3: [1, 2, 3]}
    relevant = {1: {5}, 2: {9, 4}, 3: {8}, 4: set()}
    users, rows, _ = per_user_scores(recommended, relevant, 3)
    assert users == [1, 2, 3] and rows.shape == (3, len(METRICS))
    report = ranking_report(recommended, relevant, 3)
    assert rows.mean(axis=0) == pytest.approx([report[m] for m in METRICS])
    assert rows[:, METRICS.index("recall@k")].tolist() == pytest.approx([1.0, 0.5, 0.0])


def test_tune_ef_search_reaches_the_target_recall_and_survives_save(tmp_path) -> None:
    rng = np.random.default_rng(0)
    vectors, queries = rng.normal(size=(3000, 32)), rng.normal(size=(300, 32))
    ids = np.arange(3000) + 10
    exact, _ = exact_search(vectors, ids, queries, 10)
    index = AnnIndex.build(vectors, ids, HnswParams(m=8, ef_construction=40, ef_search=10))
    before = recall_at_k(index.search(queries, 10)[0], exact)
    ef, recall = index.tune_ef_search(queries, exact, 10, target=0.95)
    assert before < 0.95 <= recall == pytest.approx(recall_at_k(index.search(queries, 10)[0], exact))
    assert ef > 10 and AnnIndex.load(index.save(tmp_path / "i.faiss")).params.ef_search == ef
    assert index.tune_ef_search(queries, exact, 10, target=0.5)[0] == ef, "never narrows the built beam"
