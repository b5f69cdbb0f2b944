"""Stage 1 of a two-stage recommender: the candidate generator interface.

A generator narrows the catalog to a few hundred candidates per user with a cheap model. It is fit on the
positives of a training window and answers ``recommend`` from state it precomputed at fit time (factors,
embeddings, an ANN index), so a request for one user costs well under a millisecond of model time. A
generator must pickle (the registry stores it with ``bentoml.picklable_model``). The catalog columns
are still the ones of the first case to use it (``video_id``, ``upload_ts``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from pipelines.core.recsys.arrays import catalog_positions, utc_ns

Recommendations = dict[int, list[tuple[int, float]]]
CHUNK = 1024
"""Users scored per matrix product; bounds memory at CHUNK x catalog floats."""


class CandidateGenerator:
    """The common ``recommend`` API over a fixed catalog of videos; subclasses supply the scores.

    ``exclude`` holds each user's already-watched videos; videos uploaded after ``at`` are never
    recommended. ``users`` (user_id + demographics) describes users unknown at fit time, for the
    generators that can use demographics; the others ignore it.
    """

    name: ClassVar[str]
    video_ids: np.ndarray
    upload_ns: np.ndarray

    def _set_catalog(self, videos: pd.DataFrame) -> None:
        videos = videos.sort_values("video_id")
        self.video_ids = videos["video_id"].to_numpy(np.int64)
        self.upload_ns = utc_ns(videos["upload_ts"])

    def _score_matrix(self, user_ids: np.ndarray, users: pd.DataFrame | None, at: pd.Timestamp | None
                      ) -> np.ndarray:
        """(len(user_ids), catalog) scores; -inf where the generator has nothing for a user."""
        raise NotImplementedError

    def _candidates(self, user_ids: np.ndarray, n: int, users: pd.DataFrame | None, at: pd.Timestamp | None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` (video ids, scores) per user, best first; the exact default scores the whole catalog."""
        scores = self._score_matrix(user_ids, users, at)
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n] if n < scores.shape[1] else np.tile(
            np.arange(scores.shape[1]), (len(user_ids), 1))
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return self.video_ids[np.take_along_axis(top, order, axis=1)], np.take_along_axis(top_scores, order, axis=1)

    def recommend(self, user_ids: np.ndarray, k: int, exclude: dict[int, set[int]] | None = None,
                  at: pd.Timestamp | None = None, users: pd.DataFrame | None = None) -> Recommendations:
        """user_id -> up to ``k`` (video_id, score) pairs, best first (empty if the generator has none)."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        exclude = exclude or {}
        unavailable = set(self.video_ids[self.upload_ns > utc_ns(at)].tolist()) if at is not None else set()
        out: Recommendations = {}
        for start in range(0, len(user_ids), CHUNK):
            chunk = user_ids[start:start + CHUNK]
            most_excluded = max((len(exclude.get(int(u), ())) for u in chunk), default=0)
            n = min(len(self.video_ids), k + most_excluded + len(unavailable))
            ids, scores = self._candidates(chunk, n, users, at)
            for user, row_ids, row_scores in zip(chunk.tolist(), ids.tolist(), scores.tolist(), strict=True):
                skip = exclude.get(user, set())
                out[user] = [(v, s) for v, s in zip(row_ids, row_scores, strict=True)
                             if s > -np.inf and v >= 0 and v not in skip and v not in unavailable][:k]
        return out

    def score_pairs(self, user_ids: np.ndarray, video_ids: np.ndarray, users: pd.DataFrame | None = None,
                    at: pd.Timestamp | None = None) -> np.ndarray:
        """The generator's score for each (user, video) pair (NaN where it has none): a ranker feature."""
        return self.pair_scores(user_ids, video_ids, users, at)[0]

    def pair_scores(self, user_ids: np.ndarray, video_ids: np.ndarray, users: pd.DataFrame | None = None,
                    at: pd.Timestamp | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each (user, video) pair's score and its rank in the user's whole-catalog list (1 = the top; NaN
        where the generator has nothing). Ranker features: a rank compares across users, where a score's
        scale varies with how much the generator knows of the user."""
        user_ids, video_ids = np.asarray(user_ids, np.int64), np.asarray(video_ids, np.int64)
        score, rank = np.full(len(user_ids), np.nan), np.full(len(user_ids), np.nan)
        col, known = catalog_positions(self.video_ids, video_ids)
        uniq, row = np.unique(user_ids, return_inverse=True)
        for start in range(0, len(uniq), CHUNK):
            scores = self._score_matrix(uniq[start:start + CHUNK], users, at)
            ranks = np.empty(scores.shape)
            np.put_along_axis(ranks, np.argsort(-scores, axis=1, kind="stable"),
                              np.arange(1, scores.shape[1] + 1, dtype=float)[None, :], axis=1)
            sel = known & (row >= start) & (row < start + CHUNK)
            score[sel], rank[sel] = scores[row[sel] - start, col[sel]], ranks[row[sel] - start, col[sel]]
        rank[np.isinf(score)] = np.nan
        score[np.isinf(score)] = np.nan
        return score, rank
