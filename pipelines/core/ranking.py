"""Top-k ranking metrics for recommenders and search: precision, recall, mAP, nDCG, MRR at k; coverage, diversity.

Precision, recall, AP, nDCG and reciprocal rank come from ``torchmetrics.functional.retrieval``. Those
functions score one query per call (about 1 ms for all five), far too slow to loop over every user. But
for a top-k list the values depend only on which of the k slots hold a relevant item and on how many relevant items the
user has in total, so users are grouped by that pattern and torchmetrics scores each distinct pattern
once: thousands of users share a few hundred patterns.

Definitions (torchmetrics'): precision@k = hits in the top k / k (a short list counts its empty slots
as misses); recall@k = hits / all relevant items, including relevant items the list never showed;
AP@k = mean precision at the ranks of the hits within the top k; nDCG@k divides by the ideal DCG of
all the user's relevant items; MRR@k = 1 / rank of the first hit in the top k (0 without one). Users with
no relevant item are not evaluated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping

import numpy as np

METRICS = ("precision@k", "recall@k", "map@k", "ndcg@k", "mrr@k")


def _pattern_scores(patterns: np.ndarray, k: int) -> np.ndarray:
    """torchmetrics' values for each row of ``patterns`` = (k hit flags, count of relevant items).

    A row becomes one query: the k listed slots get decreasing positive scores; every relevant item the
    list missed is appended with score 0, below all listed slots, so it only enters recall and ideal DCG.
    """
    import torch
    from torchmetrics.functional.retrieval import (
        retrieval_average_precision,
        retrieval_normalized_dcg,
        retrieval_precision,
        retrieval_recall,
        retrieval_reciprocal_rank,
    )

    out = np.zeros((len(patterns), len(METRICS)))
    for i, row in enumerate(patterns):
        hits, n_relevant = row[:k], int(row[k])
        missed = n_relevant - int(hits.sum())
        preds = torch.cat([torch.arange(2 * k, k, -1, dtype=torch.float32), torch.zeros(missed)])
        target = torch.cat([torch.from_numpy(hits.astype(np.int64)), torch.ones(missed, dtype=torch.int64)])
        out[i] = [float(f(preds, target, top_k=k)) for f in (retrieval_precision, retrieval_recall,
                                                              retrieval_average_precision, retrieval_normalized_dcg,
                                                              retrieval_reciprocal_rank)]
    return out


def intra_list_diversity(items: list[Hashable], item_category: Mapping[Hashable, str]) -> float:
    """Share of item pairs in one list whose categories differ (NaN for lists shorter than two)."""
    n = len(items)
    if n < 2:
        return float("nan")
    counts = Counter(item_category.get(i, "") for i in items)
    same = sum(c * (c - 1) for c in counts.values())
    return 1.0 - same / (n * (n - 1))


def per_user_scores(
    recommended: Mapping[Hashable, Iterable[Hashable]], relevant: Mapping[Hashable, Iterable[Hashable]], k: int
) -> tuple[list[Hashable], np.ndarray, list[list[Hashable]]]:
    """Each evaluated user's ``METRICS`` row: (users, (n_users, len(METRICS)) scores, their top-k lists).

    What a bootstrap over users resamples; ``ranking_report`` averages it.
    """
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    users = [u for u, items in relevant.items() if items]
    if not users:
        raise ValueError("no user has a relevant item: nothing to evaluate")
    hits = np.zeros((len(users), k), dtype=np.int64)
    n_relevant = np.zeros((len(users), 1), dtype=np.int64)
    lists: list[list[Hashable]] = []
    for row, user in enumerate(users):
        rel = set(relevant[user])
        top = list(dict.fromkeys(recommended.get(user, ())))[:k]  # an item listed twice counts once
        hits[row, : len(top)] = [item in rel for item in top]
        n_relevant[row] = len(rel)
        lists.append(top)
    patterns, inverse = np.unique(np.hstack([hits, n_relevant]), axis=0, return_inverse=True)
    per_user = _pattern_scores(patterns, k)[inverse.ravel()]
    return users, per_user, lists


def ranking_report(
    recommended: Mapping[Hashable, Iterable[Hashable]],
    relevant: Mapping[Hashable, Iterable[Hashable]],
    k: int,
    item_category: Mapping[Hashable, str] | None = None,
    catalog_size: int | None = None,
) -> dict[str, float]:
    """Mean top-k metrics over the users with at least one relevant item, plus coverage and diversity.

    ``recommended`` maps a user to its ranked list (only the first k distinct items count; a user with
    no list scores 0). ``coverage`` = distinct items in those lists / ``catalog_size``; ``diversity`` =
    mean intra-list diversity by ``item_category``. Either is NaN when its input is not given.
    """
    return summarize(*per_user_scores(recommended, relevant, k), item_category, catalog_size)


def summarize(users: list[Hashable], per_user: np.ndarray, lists: list[list[Hashable]],
              item_category: Mapping[Hashable, str] | None = None, catalog_size: int | None = None
              ) -> dict[str, float]:
    """``ranking_report`` from ``per_user_scores``' output: a caller that also needs the rows scores once."""
    report = dict(zip(METRICS, per_user.mean(axis=0).tolist(), strict=True))
    shown = {item for top in lists for item in top}
    report["coverage"] = len(shown) / catalog_size if catalog_size else float("nan")
    if item_category is None:
        report["diversity"] = float("nan")
    else:
        div = [intra_list_diversity(top, item_category) for top in lists if len(top) > 1]
        report["diversity"] = float(np.mean(div)) if div else float("nan")
    report["users"] = len(users)
    return report
