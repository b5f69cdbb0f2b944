"""Video candidate generators, each seeing a different signal, and the user profiles they share.

What is popular overall (Popular), what is rising now (Trending), what people like the user watch
(DemographicPopular, also the cold-start answer), what users with a similar history watched (ALS matrix
factorization) and what was watched alongside the user's own videos (CoVisit); Oracle ranks by the
simulator's true scores, the ceiling for offline metrics. The two-tower generator, the one that needs
torch, is in ``two_tower``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipelines.core.recsys.arrays import catalog_positions, utc_ns
from pipelines.core.recsys.generators import CandidateGenerator

AGE_EDGES = (25, 35, 45, 55)
"""Age buckets (<25, 25-34, ..., 55+): tastes differ by life stage, and coarse buckets keep segments full."""
DEMOGRAPHICS = ("age_bucket", "gender", "country", "language")
Profile = tuple[int, str, str, str]
"""A user's demographics as the models see them, in DEMOGRAPHICS order; -1 and "" mean unknown."""
UNKNOWN: Profile = (-1, "", "", "")


def _profile(row: Mapping[str, Any]) -> Profile:
    age = row.get("age")
    bucket = -1 if age is None or pd.isna(age) else bisect.bisect_right(AGE_EDGES, float(age))
    gender, country, language = ("" if row.get(c) is None or pd.isna(row.get(c)) else str(row.get(c))
                                 for c in DEMOGRAPHICS[1:])
    return bucket, gender, country, language


def profiles(users: pd.DataFrame | None, user_ids: np.ndarray | None = None) -> dict[int, Profile]:
    """user_id -> Profile from a users table (real logs may lack any demographic column).

    Plain Python per row: a request describes one user, where pandas' per-call overhead would dominate.
    ``user_ids`` restricts the work to those users.
    """
    if users is None:
        return {}
    if user_ids is not None:
        users = users[users["user_id"].isin(user_ids)]
    columns = {c: users[c].tolist() for c in ("age", *DEMOGRAPHICS[1:]) if c in users}  # not to_dict: 10x slower
    return {int(u): _profile({c: values[i] for c, values in columns.items()})
            for i, u in enumerate(users["user_id"].tolist())}


def positives(interactions: pd.DataFrame) -> pd.DataFrame:
    """The positive events (user_id, video_id, event_timestamp) in time order."""
    pos = interactions.loc[interactions["positive"] == 1, ["user_id", "video_id", "event_timestamp"]]
    if pos.empty:
        raise ValueError(f"no positive interactions among {len(interactions)} rows: nothing to train on "
                         "(for a rating log, check the positive threshold)")
    return pos.sort_values("event_timestamp", kind="stable").reset_index(drop=True)


def _window_counts(pos: pd.DataFrame, video_ids: np.ndarray, start_ns: int, end_ns: int) -> np.ndarray:
    """Positives per catalog video with ``start_ns <= t < end_ns``."""
    t = utc_ns(pos["event_timestamp"])
    vids = pos["video_id"].to_numpy()[(t >= start_ns) & (t < end_ns)]
    col, ok = catalog_positions(video_ids, vids)
    return np.bincount(col[ok], minlength=len(video_ids)).astype(float)


def positive_matrix(pos: pd.DataFrame, video_ids: np.ndarray) -> tuple[np.ndarray, Any]:
    """The users with a positive on a catalog video (sorted ids) and their users x videos CSR matrix of
    positive counts: what the collaborative generators learn from."""
    from scipy import sparse

    col, known = catalog_positions(video_ids, pos["video_id"].to_numpy())
    users, row = np.unique(pos["user_id"].to_numpy()[known], return_inverse=True)
    matrix = sparse.csr_matrix((np.ones(len(row), np.float32), (row, col[known])), shape=(len(users), len(video_ids)))
    matrix.sum_duplicates()
    return users, matrix


def training_end_ns(pos: pd.DataFrame) -> int:
    """The end of the training data: just after its last positive."""
    return int(utc_ns(pos["event_timestamp"]).max()) + 1


class Popular(CandidateGenerator):
    """The same list for everyone: most positives in the last ``days`` of training. The baseline."""

    name = "popular"

    def __init__(self, days: float = 7.0) -> None:
        self.days = days

    def fit(self, interactions: pd.DataFrame, videos: pd.DataFrame, users: pd.DataFrame | None = None) -> Popular:
        self._set_catalog(videos)
        pos = positives(interactions)
        end = training_end_ns(pos)
        self.scores = _window_counts(pos, self.video_ids, end - int(self.days * 86_400e9), end)
        return self

    def _score_matrix(self, user_ids: np.ndarray, users: pd.DataFrame | None, at: pd.Timestamp | None
                      ) -> np.ndarray:
        return np.broadcast_to(self.scores, (len(user_ids), len(self.scores)))


class Trending(CandidateGenerator):
    """Rising videos: the recent positive rate times its growth over the rate before it.

    Rates are per day the video was live, so a video uploaded a few hours ago with a handful of positives
    has a high rate and no earlier rate: fresh uploads surface here first. ``smoothing`` (positives per
    day) damps the growth of videos with little data.
    """

    name = "trending"

    def __init__(self, recent_days: float = 1.0, base_days: float = 6.0, smoothing: float = 1.0,
                 min_live_days: float = 0.25) -> None:
        self.recent_days, self.base_days = recent_days, base_days
        self.smoothing, self.min_live_days = smoothing, min_live_days

    def fit(self, interactions: pd.DataFrame, videos: pd.DataFrame, users: pd.DataFrame | None = None) -> Trending:
        self._set_catalog(videos)
        pos = positives(interactions)
        end = training_end_ns(pos)
        mid = end - int(self.recent_days * 86_400e9)
        start = mid - int(self.base_days * 86_400e9)

        def rate(lo: int, hi: int) -> np.ndarray:
            live_days = (hi - np.clip(self.upload_ns, lo, hi)) / 86_400e9
            return _window_counts(pos, self.video_ids, lo, hi) / np.maximum(live_days, self.min_live_days)

        recent, base = rate(mid, end), rate(start, mid)
        self.scores = recent * (recent + self.smoothing) / (base + self.smoothing)
        return self

    def _score_matrix(self, user_ids: np.ndarray, users: pd.DataFrame | None, at: pd.Timestamp | None
                      ) -> np.ndarray:
        return np.broadcast_to(self.scores, (len(user_ids), len(self.scores)))


class DemographicPopular(CandidateGenerator):
    """Popular among users like this one: per segment (default language x age bucket x gender), shrunk to global.

    A segment's distribution over videos is its positive counts plus ``strength`` pseudo-positives spread
    like the global popularity, so small segments lean on the global list. It needs no history, so it is
    the generator for cold-start users; users with unknown demographics get the global list. On
    VideoWorld (small), language x age x gender beat country x age by ~4% recall@10 and ~12% nDCG@10:
    tastes are shared by age-gender segments and language decides what a user can watch.
    """

    name = "demographic_popular"

    def __init__(self, keys: Sequence[str] = ("language", "age_bucket", "gender"), days: float = 7.0,
                 strength: float = 100.0) -> None:
        keys = tuple(keys)  # params.yaml gives a list
        unknown = set(keys) - set(DEMOGRAPHICS)
        if unknown:
            raise ValueError(f"unknown demographic keys {sorted(unknown)}; use some of {DEMOGRAPHICS}")
        self.keys, self.days, self.strength = keys, days, strength
        self.fields = [DEMOGRAPHICS.index(k) for k in keys]

    def _segment(self, profile: Profile) -> tuple[Any, ...]:
        return tuple(profile[i] for i in self.fields)

    def fit(self, interactions: pd.DataFrame, videos: pd.DataFrame,
            users: pd.DataFrame | None = None) -> DemographicPopular:
        if users is None:
            raise ValueError("DemographicPopular needs the users table (user_id + demographics)")
        self._set_catalog(videos)
        pos = positives(interactions)
        end = training_end_ns(pos)
        pos = pos[utc_ns(pos["event_timestamp"]) >= end - int(self.days * 86_400e9)]
        self.user_segment = {u: self._segment(p) for u, p in profiles(users).items()}
        col, known = catalog_positions(self.video_ids, pos["video_id"].to_numpy())
        unknown = self._segment(UNKNOWN)
        segments = [self.user_segment.get(u, unknown) for u in pos["user_id"].to_numpy()[known].tolist()]
        self.segment_row = {seg: i for i, seg in enumerate(dict.fromkeys(segments))}
        counts = np.zeros((len(self.segment_row), len(self.video_ids)))
        np.add.at(counts, ([self.segment_row[seg] for seg in segments], col[known]), 1.0)
        glob = counts.sum(0)
        self.global_share = (glob + 1.0) / (glob.sum() + len(glob))
        self.table = (counts + self.strength * self.global_share) / (counts.sum(1, keepdims=True) + self.strength)
        return self

    def _score_matrix(self, user_ids: np.ndarray, users: pd.DataFrame | None, at: pd.Timestamp | None
                      ) -> np.ndarray:
        segment = [self.user_segment.get(u) for u in user_ids.tolist()]
        if None in segment:  # users unknown at fit time, described by the request (or not at all)
            new = profiles(users, user_ids[[s is None for s in segment]])
            segment = [s if s is not None else self._segment(new.get(u, UNKNOWN))
                       for u, s in zip(user_ids.tolist(), segment, strict=True)]
        rows = np.array([self.segment_row.get(s, -1) for s in segment], dtype=np.int64)
        return np.where((rows >= 0)[:, None], self.table[rows], self.global_share[None, :])


class ALS(CandidateGenerator):
    """Implicit-feedback matrix factorization (implicit's CPU ALS) on user x video positives plus demographics.

    A user's row holds their positive counts (confidence ``1 + alpha * count``; implicit applies ``alpha``)
    and, with weight ``demographic_weight``, one pseudo-video per demographic group they belong to (age x
    gender, language, country). Most users have one or two positives; the pseudo-videos let them borrow
    their group's taste, and let a user with no history be folded in from demographics alone (one small
    least-squares solve by implicit's ``recalculate_user``). On VideoWorld (small, three seeds) plain ALS
    only matched Popular on users with history; with the pseudo-videos it beats Popular by 18-42% in
    recall@10 over all users. Users of the users table are folded in at fit time, so a request is one dot
    product against the item factors. ``demographic_weight=0`` is plain ALS, which has nothing for users
    without positives.

    ``regularization=None`` scales it with the data, ``0.5 * sqrt(positives)``: the best fixed value
    grew from ~50 on VideoWorld small (9k positives) to ~150 on large (98k), and either one lost 10-25%
    recall@10 at the other scale.
    """

    name = "als"

    def __init__(self, factors: int = 32, regularization: float | None = None, alpha: float = 5.0, iterations: int = 15,
                 demographic_weight: float = 2.0,
                 demographics: Sequence[Sequence[str]] = (("age_bucket", "gender"), ("language",), ("country",)),
                 seed: int = 0, threads: int = 2) -> None:
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.seed, self.threads = iterations, seed, threads
        self.demographic_weight = demographic_weight
        self.demographics = tuple(tuple(keys) for keys in demographics)  # params.yaml gives lists
        unknown = {k for keys in self.demographics for k in keys} - set(DEMOGRAPHICS)
        if unknown:
            raise ValueError(f"unknown demographic keys {sorted(unknown)}; use some of {DEMOGRAPHICS}")
        self.fields = [[DEMOGRAPHICS.index(k) for k in keys] for keys in self.demographics]

    def _group_keys(self, profile: Profile) -> list[tuple[int, tuple[Any, ...]]]:
        return [(j, tuple(profile[i] for i in fields)) for j, fields in enumerate(self.fields)]

    def _groups(self, profs: list[Profile]) -> np.ndarray:
        """(users, demographics) pseudo-video column per user and demographic (-1: a group unseen in fit)."""
        return np.array([[self.group_index.get(g, -1) for g in self._group_keys(p)] for p in profs],
                        dtype=np.int64).reshape(len(profs), len(self.fields))

    def _group_rows(self, groups: np.ndarray) -> Any:
        """CSR rows of pseudo-video weights over (videos + groups) columns, one row per user."""
        from scipy import sparse

        rows = np.repeat(np.arange(len(groups)), groups.shape[1])
        ok = groups.ravel() >= 0
        return sparse.csr_matrix((np.full(ok.sum(), self.demographic_weight, np.float32),
                                  (rows[ok], len(self.video_ids) + groups.ravel()[ok])),
                                 shape=(len(groups), len(self.video_ids) + len(self.group_index)))

    def _fold_in(self, profs: list[Profile]) -> np.ndarray:
        """Factors of users known only by demographics; one solve per distinct group combination, cached."""
        from threadpoolctl import threadpool_limits

        groups = self._groups(profs)
        keys = [tuple(g) for g in groups.tolist()]
        missing = sorted(set(keys) - self.folded.keys())
        if missing:
            with threadpool_limits(1, "blas"):
                factors = self.model.recalculate_user(np.arange(len(missing)), self._group_rows(np.array(missing)))
            self.folded.update(zip(missing, np.asarray(factors, np.float32), strict=True))
        return np.array([self.folded[k] for k in keys], np.float32).reshape(len(keys), self.factors)

    def fit(self, interactions: pd.DataFrame, videos: pd.DataFrame, users: pd.DataFrame | None = None) -> ALS:
        from implicit.cpu.als import AlternatingLeastSquares
        from scipy import sparse
        from threadpoolctl import threadpool_limits

        self._set_catalog(videos)
        active, matrix = positive_matrix(positives(interactions), self.video_ids)
        self.group_index: dict[tuple[int, tuple[Any, ...]], int] = {}
        self.folded: dict[tuple[int, ...], np.ndarray] = {}
        profs = profiles(users) if self.demographic_weight > 0 else {}
        if profs:
            keys = {g for p in profs.values() for g in self._group_keys(p)}
            self.group_index = {g: i for i, g in enumerate(sorted(keys))}
            rows = self._group_rows(self._groups([profs.get(u, UNKNOWN) for u in active.tolist()]))
            matrix = sparse.hstack([matrix, rows[:, len(self.video_ids):]], format="csr")
        self.fitted_regularization = self.regularization or 0.5 * float(np.sqrt(matrix[:, : len(self.video_ids)].nnz))
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads only contend
            self.model = AlternatingLeastSquares(factors=self.factors, regularization=self.fitted_regularization,
                                                 alpha=self.alpha, iterations=self.iterations,
                                                 random_state=self.seed, num_threads=self.threads)
            self.model.fit(matrix, show_progress=False)
        self.item_factors = np.asarray(self.model.item_factors, np.float32)[: len(self.video_ids)]
        self.user_ids, self.user_factors = active, np.asarray(self.model.user_factors, np.float32)
        if profs:
            others = np.setdiff1d(np.fromiter(profs, np.int64, len(profs)), active)
            self.user_ids = np.concatenate([active, others])
            self.user_factors = np.vstack([self.user_factors, self._fold_in([profs[u] for u in others.tolist()])])
            order = np.argsort(self.user_ids)
            self.user_ids, self.user_factors = self.user_ids[order], self.user_factors[order]
        return self

    def _score_matrix(self, user_ids: np.ndarray, users: pd.DataFrame | None, at: pd.Timestamp | None
                      ) -> np.ndarray:
        row, known = catalog_positions(self.user_ids, user_ids)
        factors = self.user_factors[row]
        scores = np.full((len(user_ids), len(self.video_ids)), -np.inf)
        if not known.all() and self.group_index:
            new = profiles(users, user_ids[~known])
            fold = ~known & np.isin(user_ids, np.fromiter(new, np.int64, len(new)))
            factors[fold] = self._fold_in([new[u] for u in user_ids[fold].tolist()])
            known |= fold
        scores[known] = factors[known] @ self.item_factors.T
        return scores


class CoVisit(CandidateGenerator):
    """Item-to-item co-occurrence: the videos engaged with by the users who engaged with this user's videos.

    ``similarity[i, j] = both(i, j) / (sqrt(n_i * n_j) + shrinkage)`` over users' positives (cosine, shrunk
    so that two videos sharing one fan do not look alike), and a user's score of a video is the sum of
    its similarities to the user's own positives: the "people who watched this also watched" signal that
    the book's ranker reads as a co-occurrence feature. A user without positives, or a video that shares
    no fan with them, gets nothing (-inf): the generator proposes only videos it has evidence for.
    """

    name = "co_visit"

    def __init__(self, shrinkage: float = 10.0) -> None:
        self.shrinkage = shrinkage

    def fit(self, interactions: pd.DataFrame, videos: pd.DataFrame, users: pd.DataFrame | None = None) -> CoVisit:
        from scipy import sparse

        self._set_catalog(videos)
        self.user_ids, engaged = positive_matrix(positives(interactions), self.video_ids)
        engaged.data[:] = 1.0  # a user's repeats of a video count once
        fans = np.asarray(engaged.sum(axis=0)).ravel()
        both = (engaged.T @ engaged).tocoo()
        off = both.row != both.col
        i, j = both.row[off], both.col[off]
        self.similarity = sparse.csr_matrix(
            (both.data[off] / (np.sqrt(fans[i] * fans[j]) + self.shrinkage), (i, j)), shape=both.shape)
        self.engaged = engaged
        return self

    def _score_matrix(self, user_ids: np.ndarray, users: pd.DataFrame | None, at: pd.Timestamp | None
                      ) -> np.ndarray:
        row, known = catalog_positions(self.user_ids, user_ids)  # fit saw at least one positive
        scores = np.full((len(user_ids), len(self.video_ids)), -np.inf)
        if known.any():
            summed = (self.engaged[row[known]] @ self.similarity).toarray()
            scores[known] = np.where(summed > 0, summed, -np.inf)
        return scores


class Oracle(CandidateGenerator):
    """Ranks by a known true score (the simulator's ``true_scores``): the ceiling for offline metrics."""

    name = "oracle"

    def __init__(self, true_scores: Callable[[np.ndarray, np.ndarray, pd.Timestamp], np.ndarray],
                 videos: pd.DataFrame) -> None:
        self.true_scores = true_scores
        self._set_catalog(videos)

    def _score_matrix(self, user_ids: np.ndarray, users: pd.DataFrame | None, at: pd.Timestamp | None
                      ) -> np.ndarray:
        if at is None:
            raise ValueError("the oracle needs `at`: true scores depend on time")
        return np.asarray(self.true_scores(user_ids, self.video_ids, at), dtype=float)
