"""Stage 3 of a two-stage recommender: re-ranking the ranked candidates into the final list.

Plain numpy, importing no model library: a caller that only re-ranks (or merges the stages' candidates)
loads neither torch nor LightGBM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipelines.core.recsys.arrays import NAT, utc_ns


def _cumcount(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each group, in array order (numpy's answer to groupby().cumcount())."""
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    run = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    out = np.empty(len(g), np.int64)
    out[order] = run
    return out


def merge_stages(user: np.ndarray, video: np.ndarray, stage: np.ndarray, names: Sequence[str],
                 priority: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row per distinct (user, video): the row of lowest ``priority``, and every stage that proposed it.

    ``stage`` holds each row's index into ``names``. Returns the kept row indices, ordered by (user,
    video), and each one's stage label: the names of the stages, joined by "," in ``names`` order.
    """
    order = np.lexsort((priority, video, user))
    first = np.flatnonzero(np.r_[True, (user[order][1:] != user[order][:-1]) | (video[order][1:] != video[order][:-1])])
    masks = np.bitwise_or.reduceat(np.left_shift(1, stage.astype(np.int64))[order], first)
    label = {m: ",".join(n for b, n in enumerate(names) if m >> b & 1) for m in set(masks.tolist())}
    return order[first], np.array([label[m] for m in masks.tolist()], object)


def rerank(candidates: Mapping[str, Any], k: int, at: pd.Timestamp, freshness_weight: float = 0.3,
           max_per_category: int = 3, exclude: dict[int, set[int]] | None = None,
           freshness_half_life_days: float = 2.0) -> dict[str, np.ndarray]:
    """Final top ``k`` per user from scored candidates (user_id, video_id, score, stage, upload_ts, category).

    - drops videos in ``exclude`` (already watched) and merges duplicates: a video several generators
      proposed keeps its best score and a ``stage`` listing every generator ("als,two_tower");
    - boosts fresh uploads: ``freshness_weight * 0.5 ** (age_days / half_life)`` is added to the score
      standardised within the user, so the weight is in standard deviations whatever the ranker's scale;
    - caps each category at ``max_per_category`` videos, filling the list from the capped ones only when
      too few other candidates are left (diversity without returning fewer than ``k``); videos of
      unknown category are never capped together.
    ``candidates`` is a DataFrame or a column mapping. Returns user_id, video_id, score, stage, category,
    ``rerank_score`` and ``rank`` (1..k) as arrays, ordered by user and rank. Plain numpy: one user's few
    hundred candidates take well under a millisecond.
    """
    cols = ["user_id", "video_id", "score", "stage", "upload_ts", "category"]
    missing = [c for c in cols if c not in candidates]
    if missing:
        raise ValueError(f"rerank candidates lack columns {missing}")
    c = {name: np.asarray(candidates[name]) for name in cols if name != "upload_ts"}
    user, video = c["user_id"].astype(np.int64), c["video_id"].astype(np.int64)
    score = c["score"].astype(float)
    keep = np.ones(len(user), bool)
    if exclude:
        keep = np.array([v not in exclude.get(u, ()) for u, v in zip(user.tolist(), video.tolist(), strict=True)],
                        dtype=bool)
    # Duplicates: the best-scoring row of each (user, video) stays, with the union of the stages.
    stage_code, stage_names = pd.factorize(c["stage"], sort=True)
    rows = np.flatnonzero(keep)
    if not len(rows):
        return {name: values[:0] for name, values in c.items()} | {"rerank_score": np.empty(0),
                                                                  "rank": np.empty(0, np.int64)}
    merged, stages = merge_stages(user[rows], video[rows], stage_code[rows], list(stage_names), -score[rows])
    rows = rows[merged]
    # Standardise per user, then add the freshness boost.
    u_code, u_count = np.unique(user[rows], return_inverse=True, return_counts=True)[1:]
    mean = np.bincount(u_code, score[rows]) / u_count
    std = np.sqrt(np.maximum(np.bincount(u_code, score[rows] ** 2) / u_count - mean**2, 0.0))
    z = (score[rows] - mean[u_code]) / np.where(std[u_code] > 1e-12, std[u_code], 1.0)
    upload = utc_ns(candidates["upload_ts"])[rows]
    age_days = np.clip((utc_ns(at) - upload) / 86_400e9, 0, None)
    fresh = np.where(upload == NAT, 0.0, 0.5 ** (age_days / freshness_half_life_days))  # unknown upload: no boost
    final = z + freshness_weight * fresh
    # Category cap: rank within (user, category) by the final score; over-cap rows go after all others.
    by_score = np.lexsort((-final, u_code))
    cat_code = pd.factorize(c["category"][rows])[0]
    unknown = cat_code < 0
    cat_code[unknown] = cat_code.max() + 1 + np.arange(unknown.sum())  # unknown categories are never capped together
    nth = np.empty(len(rows), np.int64)
    nth[by_score] = _cumcount((u_code * (cat_code.max() + 1) + cat_code)[by_score])
    order = np.lexsort((-final, nth >= max_per_category, u_code))
    order = order[_cumcount(u_code[order]) < k]
    take = rows[order]
    return {name: values[take] for name, values in c.items()} | {
        "stage": stages[order], "rerank_score": final[order],
        "rank": _cumcount(u_code[order]) + 1}
