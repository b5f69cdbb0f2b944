"""Top-k ranking metrics against hand-computed cases, and the ANN index against exact search."""

import math
import pickle

import numpy as np
import pytest
import torch
from torchmetrics.functional.retrieval import (
    retrieval_average_precision,
    retrieval_normalized_dcg,
    retrieval_precision,
    retrieval_recall,
)

from pipelines.core.ann import AnnIndex, HnswParams, exact_search, query_time, recall_at_k
from pipelines.core.ranking import intra_list_diversity, ranking_report


def test_a_perfect_list_scores_one() -> None:
    r = ranking_report({1: ["a", "b", "c"]}, {1: {"a", "b", "c"}}, k=3)
    for m in ("precision@k", "recall@k", "map@k", "ndcg@k"):
        assert r[m] == pytest.approx(1.0)
    assert r["users"] == 1


def test_hand_computed_case() -> None:
    # list a, b, c; relevant a, c and d (d never shown)
    r = ranking_report({1: ["a", "b", "c"]}, {1: {"a", "c", "d"}}, k=3)
    assert r["precision@k"] == pytest.approx(2 / 3)
    assert r["recall@k"] == pytest.approx(2 / 3)
    assert r["map@k"] == pytest.approx((1 / 1 + 2 / 3) / 2)  # torchmetrics: mean precision at the hits
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert r["ndcg@k"] == pytest.approx((1 + 1 / math.log2(4)) / ideal)


def test_relevant_items_not_recommended_lower_recall_and_ndcg() -> None:
    rec = {1: ["a", "b"]}
    base = ranking_report(rec, {1: {"a"}}, k=2)
    more = ranking_report(rec, {1: {"a", "x", "y"}}, k=2)
    assert base["recall@k"] == 1.0 and more["recall@k"] == pytest.approx(1 / 3)
    assert more["ndcg@k"] < base["ndcg@k"] == pytest.approx(1.0)
    assert more["precision@k"] == base["precision@k"] == 0.5


def test_short_missing_and_duplicate_lists() -> None:
    relevant = {1: {"a"}, 2: {"b"}, 3: set()}
    r = ranking_report({1: ["a"], 3: ["z"]}, relevant, k=4)  # user 2 got nothing; user 3 has nothing relevant
    assert r["users"] == 2
    assert r["precision@k"] == pytest.approx((1 / 4 + 0) / 2)  # empty slots count as misses
    assert r["recall@k"] == pytest.approx(0.5)
    dup = ranking_report({1: ["a", "a", "b"]}, {1: {"a", "b"}}, k=2)  # a repeated item counts once
    assert dup["recall@k"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no user has a relevant item"):
        ranking_report({1: ["a"]}, {1: set()}, k=1)


def test_coverage_and_diversity() -> None:
    cats = {"a": "x", "b": "x", "c": "y", "d": "z"}
    r = ranking_report({1: ["a", "b"], 2: ["a", "c", "d"]}, {1: {"a"}, 2: {"c"}}, k=3, item_category=cats,
                       catalog_size=8)
    assert r["coverage"] == pytest.approx(4 / 8)
    # list 1: its one pair shares a category (0); list 2: all three pairs differ (1)
    assert r["diversity"] == pytest.approx(0.5)
    assert intra_list_diversity(["a", "b", "c"], cats) == pytest.approx(2 / 3)
    assert math.isnan(ranking_report({1: ["a"]}, {1: {"a"}}, k=1)["diversity"])


def test_grouped_scoring_equals_torchmetrics_per_user() -> None:
    rng = np.random.default_rng(0)
    k, users = 5, 300
    rec = {u: list(rng.choice(40, size=rng.integers(1, 8), replace=False)) for u in range(users)}
    rel = {u: set(rng.choice(40, size=rng.integers(1, 6)).tolist()) for u in range(users)}
    per_user = []
    for u in range(users):
        top = list(rec[u])[:k] + [-1 - j for j in range(k - min(k, len(rec[u])))]  # empty slots = misses
        items = top + sorted(rel[u] - set(top))
        preds = torch.tensor([2.0 * k - j for j in range(k)] + [-1.0 - j for j in range(len(items) - k)])
        target = torch.tensor([int(i in rel[u]) for i in items])
        per_user.append([float(f(preds, target, top_k=k)) for f in (
            retrieval_precision, retrieval_recall, retrieval_average_precision, retrieval_normalized_dcg)])
    expected = np.mean(per_user, axis=0)
    r = ranking_report(rec, rel, k)
    assert [r["precision@k"], r["recall@k"], r["map@k"], r["ndcg@k"]] == pytest.approx(expected.tolist())


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    # clustered like learned embeddings, not isotropic noise
    centres = rng.normal(size=(20, 16))
    items = (centres[rng.integers(0, 20, 2000)] + 0.5 * rng.normal(size=(2000, 16))).astype(np.float32)
    queries = (centres[rng.integers(0, 20, 200)] + 0.5 * rng.normal(size=(200, 16))).astype(np.float32)
    return items, np.arange(1, 2001, dtype=np.int64) * 7, queries


def test_hnsw_recall_against_exact_search(vectors: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    items, ids, queries = vectors
    index = AnnIndex.build(items, ids)
    ann, ann_scores = index.search(queries, 10)
    exact, exact_scores = exact_search(items, ids, queries, 10)
    assert recall_at_k(ann, exact) >= 0.95
    assert set(np.unique(ann)) <= set(ids)  # ids, not row numbers
    assert np.allclose(exact_scores[:, 0], (queries * items[(exact[:, 0] // 7) - 1]).sum(1), atol=1e-4)
    assert (np.diff(ann_scores, axis=1) <= 1e-6).all()  # best first
    # a starved graph search finds less than a well-configured one
    weak = AnnIndex.build(items, ids, HnswParams(m=4, ef_construction=8, ef_search=1))
    assert recall_at_k(weak.search(queries, 10)[0], exact) < recall_at_k(ann, exact)
    timing = query_time(index, queries[:50], 10)
    assert timing["p50_ms"] > 0 and timing["batch_qps"] > 0 and timing["queries"] == 50


def test_recall_at_k_ignores_padding() -> None:
    assert recall_at_k(np.array([[1, 2, -1]]), np.array([[2, 1, -1]])) == 1.0
    assert recall_at_k(np.array([[1, 5], [3, 4]]), np.array([[1, 2], [3, 4]])) == 0.75


def test_index_save_load_and_pickle_round_trip(vectors: tuple[np.ndarray, np.ndarray, np.ndarray],
                                               tmp_path) -> None:
    items, ids, queries = vectors
    params = HnswParams(m=16, ef_construction=100, ef_search=50)
    index = AnnIndex.build(items[:300], ids[:300], params)
    before = index.search(queries, 5)
    path = index.save(tmp_path / "index" / "items.faiss")
    assert [p.name for p in path.parent.iterdir()] == ["items.faiss"]  # no temp file left behind
    for copy in (AnnIndex.load(path), pickle.loads(pickle.dumps(index))):
        assert copy.params == params and len(copy) == 300 and copy.dim == 16
        after = copy.search(queries, 5)
        assert np.array_equal(before[0], after[0]) and np.allclose(before[1], after[1])
    with pytest.raises(FileNotFoundError, match="indexing step"):
        AnnIndex.load(tmp_path / "missing.faiss")
    with pytest.raises(ValueError, match="ids"):
        AnnIndex.build(items[:3], ids[:2])
