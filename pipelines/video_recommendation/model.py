"""Video recommendation models: candidate generators, the ranker and the re-ranker.

Stage 1 (candidate generation) narrows the catalog to a few hundred videos per user with cheap models
that each see a different signal: what is popular overall (Popular), what is rising now (Trending),
what people like the user watch (DemographicPopular, also the cold-start answer), what users with a
similar history watched (ALS matrix factorization) and a two-tower network whose item embeddings sit in
an ANN index. Stage 2 (Ranker) scores those candidates with richer features; stage 3 (``rerank``) mixes in
fresh uploads, caps each category and removes duplicates and already-watched videos.

Every generator is fit on the positives of a training window and answers ``recommend`` from state it
precomputed at fit time (factors, embeddings, the index), so a request for one user costs well under a
millisecond of model time. All of them pickle (the registry stores them with ``bentoml.picklable_model``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from pipelines.core.ann import AnnIndex, HnswParams

Recommendations = dict[int, list[tuple[int, float]]]
AGE_EDGES = (25, 35, 45, 55)
"""Age buckets (<25, 25-34, ..., 55+): tastes differ by life stage, and coarse buckets keep segments full."""
DURATION_EDGES = np.array([60, 180, 600, 1200, 2400])
"""Duration buckets in seconds: shorts, clips, episodes, long-form."""
VIDEO_AGE_EDGES = np.array([0.5, 1, 2, 4, 8, 16, 32, 64])
"""Video age buckets in days: exposure and novelty fade over a video's first days."""
DEMOGRAPHICS = ("age_bucket", "gender", "country", "language")
Profile = tuple[int, str, str, str]
"""A user's demographics as the models see them, in DEMOGRAPHICS order; -1 and "" mean unknown."""
UNKNOWN: Profile = (-1, "", "", "")
MAX_TAGS = 5
CHUNK = 1024
"""Users scored per matrix product; bounds memory at CHUNK x catalog floats."""


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


def _vocab(values: pd.Series) -> dict[str, int]:
    """Index 1..n per distinct known value; 0 is reserved for unknown or unseen values."""
    return {v: i + 1 for i, v in enumerate(sorted(set(values.dropna().astype(str))))}


def _lookup(values: pd.Series, vocab: dict[str, int]) -> np.ndarray:
    return values.astype(str).map(vocab).fillna(0).to_numpy(np.int64)


NAT = np.iinfo(np.int64).min
"""What ``utc_ns`` gives for a missing timestamp."""


def utc_ns(ts: Any) -> np.ndarray | int:
    """UTC nanoseconds since the epoch (NAT where missing), for cheap comparisons whatever the column's unit.

    Takes a Timestamp, a Series, a numpy ``datetime64`` array (read as UTC) or anything ``pd.to_datetime`` reads.
    """
    if isinstance(ts, pd.Timestamp):
        return int(ts.value)
    if isinstance(ts, np.ndarray) and ts.dtype.kind == "M":
        return ts.astype("datetime64[ns]").view(np.int64)
    if not isinstance(ts, pd.Series):
        ts = pd.Series(ts)
    if not (isinstance(ts.dtype, pd.DatetimeTZDtype) or ts.dtype.kind == "M"):
        ts = pd.to_datetime(ts, utc=True)
    return ts.array.as_unit("ns").asi8


def as_floats(values: Any) -> np.ndarray:
    """Numbers as a float array, NaN where missing: ``None`` from online reads, ``pd.NA`` from nullable columns."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(float)
    if not isinstance(values, pd.Series):
        try:
            return np.asarray(values, dtype=float)  # a list with None: NaN there
        except (TypeError, ValueError):
            values = pd.Series(list(values), dtype=object)
    return pd.to_numeric(values, errors="coerce").to_numpy(float, na_value=np.nan)


def catalog_positions(catalog: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column of each id in the sorted ``catalog`` and whether the id is in it at all."""
    col = np.searchsorted(catalog, ids).clip(0, max(0, len(catalog) - 1))
    return col, catalog[col] == ids


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Cap torch's intra-op threads for a block (the machine is shared), then restore them."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n, old)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


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
        user_ids, video_ids = np.asarray(user_ids, np.int64), np.asarray(video_ids, np.int64)
        out = np.full(len(user_ids), np.nan)
        col, known = catalog_positions(self.video_ids, video_ids)
        uniq, row = np.unique(user_ids, return_inverse=True)
        for start in range(0, len(uniq), CHUNK):
            scores = self._score_matrix(uniq[start:start + CHUNK], users, at)
            sel = known & (row >= start) & (row < start + CHUNK)
            out[sel] = scores[row[sel] - start, col[sel]]
        out[np.isinf(out)] = np.nan
        return out


def _window_counts(pos: pd.DataFrame, video_ids: np.ndarray, start_ns: int, end_ns: int) -> np.ndarray:
    """Positives per catalog video with ``start_ns <= t < end_ns``."""
    t = utc_ns(pos["event_timestamp"])
    vids = pos["video_id"].to_numpy()[(t >= start_ns) & (t < end_ns)]
    col, ok = catalog_positions(video_ids, vids)
    return np.bincount(col[ok], minlength=len(video_ids)).astype(float)


def _end_ns(pos: pd.DataFrame) -> int:
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
        end = _end_ns(pos)
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
        end = _end_ns(pos)
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
        end = _end_ns(pos)
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
        pos = positives(interactions)
        col, known = catalog_positions(self.video_ids, pos["video_id"].to_numpy())
        active, row = np.unique(pos["user_id"].to_numpy()[known], return_inverse=True)
        matrix = sparse.csr_matrix((np.ones(len(row), np.float32), (row, col[known])),
                                   shape=(len(active), len(self.video_ids)))
        matrix.sum_duplicates()
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
        row = np.searchsorted(self.user_ids, user_ids).clip(0, max(0, len(self.user_ids) - 1))
        known = self.user_ids[row] == user_ids
        factors = self.user_factors[row]
        scores = np.full((len(user_ids), len(self.video_ids)), -np.inf)
        if not known.all() and self.group_index:
            new = profiles(users, user_ids[~known])
            fold = ~known & np.isin(user_ids, np.fromiter(new, np.int64, len(new)))
            factors[fold] = self._fold_in([new[u] for u in user_ids[fold].tolist()])
            known |= fold
        scores[known] = factors[known] @ self.item_factors.T
        return scores


class UserTower(nn.Module):
    """User id + demographics + mean embedding of the user's recent positive videos -> unit vector."""

    def __init__(self, n_users: int, n_items: int, sizes: dict[str, int], dim: int, hidden: int) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users + 1, dim)
        self.history = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.demo = nn.ModuleDict({c: nn.Embedding(sizes[c] + 1, 8) for c in DEMOGRAPHICS})
        self.mlp = nn.Sequential(nn.Linear(2 * dim + 8 * len(DEMOGRAPHICS), hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, user: torch.Tensor, demo: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        n_hist = (history > 0).sum(1, keepdim=True).clamp(min=1)
        parts = [self.user(user), self.history(history).sum(1) / n_hist]
        parts += [self.demo[c](demo[:, i]) for i, c in enumerate(DEMOGRAPHICS)]
        return nn.functional.normalize(self.mlp(torch.cat(parts, 1)), dim=1)


class ItemTower(nn.Module):
    """Video id + category + language + duration + age buckets + mean tag embedding -> unit vector, plus a bias.

    ``feats`` columns: category, language, duration bucket, age bucket (the video's age when scored).
    """

    def __init__(self, n_items: int, sizes: dict[str, int], dim: int, hidden: int) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items + 1, dim)
        self.category = nn.Embedding(sizes["category"] + 1, 8)
        self.language = nn.Embedding(sizes["video_language"] + 1, 8)
        self.duration = nn.Embedding(len(DURATION_EDGES) + 2, 4)
        self.age = nn.Embedding(len(VIDEO_AGE_EDGES) + 2, 4)
        self.tags = nn.EmbeddingBag(sizes["tags"] + 1, 8, mode="sum", padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(dim + 32, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.bias = nn.Embedding(n_items + 1, 1)
        nn.init.zeros_(self.bias.weight)

    def forward(self, item: torch.Tensor, feats: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        n_tags = (tags > 0).sum(1, keepdim=True).clamp(min=1)
        x = torch.cat([self.item(item), self.category(feats[:, 0]), self.language(feats[:, 1]),
                       self.duration(feats[:, 2]), self.age(feats[:, 3]), self.tags(tags) / n_tags], 1)
        return nn.functional.normalize(self.mlp(x), dim=1)


@dataclass
class TwoTowerParams:
    """Two-tower training knobs (see ``TwoTower``)."""

    dim: int = 32
    hidden: int = 64
    temperature: float = 0.35
    epochs: int = 10
    batch_size: int = 512
    lr: float = 0.003
    weight_decay: float = 1e-6
    history: int = 20
    id_dropout: float = 0.3
    seed: int = 0
    threads: int = 1
    """Torch threads for training. One: on a shared 2-core machine two threads made small steps 10-20x
    slower (each op waits for a busy core); on an idle one they save about a third."""
    ann: HnswParams = field(default_factory=HnswParams)


class TwoTower(CandidateGenerator):
    """Two towers trained with in-batch sampled softmax and the log-popularity (logQ) correction.

    In-batch negatives are other users' positives, so popular videos are over-sampled as negatives;
    subtracting log q(video) from each logit undoes that bias (Yi et al., 2019). The score of a pair is
    ``u . v / temperature + bias(v)``: the index holds ``[v, bias]`` and a query is ``[u / temperature, 1]``,
    so the ANN inner product is exactly the model's score. User vectors of known users are precomputed
    from their history at fit time; an unknown user is embedded from demographics alone (the id and
    history embeddings are randomly dropped in training so this case is learned).
    """

    name = "two_tower"

    def __init__(self, params: TwoTowerParams | None = None) -> None:
        self.params = params or TwoTowerParams()

    # ----- encoding: the same for training, fit-time export and cold-start requests
    def _encode_users(self, profs: list[Profile]) -> np.ndarray:
        """(n, 4) demographic ids: age bucket + 1 and vocabulary indices, 0 where unknown or unseen."""
        vocabs = [self.vocab[c] for c in DEMOGRAPHICS[1:]]
        return np.array([[p[0] + 1, *(v.get(x, 0) for v, x in zip(vocabs, p[1:], strict=True))] for p in profs],
                        dtype=np.int64).reshape(len(profs), len(DEMOGRAPHICS))

    def _encode_items(self, videos: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(n, 4) feature ids (the age column left 0: it depends on when the video is scored) and (n, 5) tags."""
        duration = pd.to_numeric(videos["duration_s"], errors="coerce").to_numpy(float)
        dur = np.where(np.isnan(duration), 0, np.searchsorted(DURATION_EDGES, np.nan_to_num(duration)) + 1)
        feats = np.stack([_lookup(videos["category"], self.vocab["category"]),
                          _lookup(videos["language"], self.vocab["video_language"]), dur, np.zeros(len(videos))],
                         1).astype(np.int64)
        tags = np.zeros((len(videos), MAX_TAGS), np.int64)
        for i, text in enumerate(videos["tags"].fillna("").astype(str)):
            idx = [self.vocab["tags"].get(t, 0) for t in text.split("|")[:MAX_TAGS] if t]
            tags[i, : len(idx)] = idx
        return feats, tags

    def _video_age(self, item: np.ndarray, now_ns: np.ndarray | int) -> np.ndarray:
        """Age bucket (1-based; 0 = unknown upload time) of catalog items (1-based) at ``now_ns``."""
        upload = self.upload_ns[item - 1]
        days = (now_ns - upload) / 86_400e9
        return np.where(upload == NAT, 0, np.searchsorted(VIDEO_AGE_EDGES, days) + 1)

    def _history(self, pos: pd.DataFrame, include_self: bool) -> np.ndarray:
        """(len(pos), H) catalog items (1-based, 0 = none) of each row's user's last positives, newest first.

        ``pos`` is sorted by user and time; training rows see only earlier positives, the export row (a
        user's last positive) includes itself.
        """
        h, first = self.params.history, 0 if include_self else 1
        item, user = pos["_item"].to_numpy(), pos["user_id"].to_numpy()
        out = np.zeros((len(pos), h), np.int64)
        for lag in range(first, h + first):
            prev = np.arange(len(pos)) - lag
            ok = prev >= 0
            ok[ok] &= user[prev[ok]] == user[ok]
            out[ok, lag - first] = item[prev[ok]]
        return out

    def fit(self, interactions: pd.DataFrame, videos: pd.DataFrame, users: pd.DataFrame | None = None) -> TwoTower:
        p = self.params
        self._set_catalog(videos)
        videos = videos.sort_values("video_id").reset_index(drop=True)
        pos = positives(interactions)
        self.end_ns = _end_ns(pos)
        pos = pos[pos["video_id"].isin(self.video_ids)].sort_values(["user_id", "event_timestamp"], kind="stable")
        pos["_item"] = np.searchsorted(self.video_ids, pos["video_id"].to_numpy()) + 1
        pos = pos.reset_index(drop=True)
        profs = profiles(users)
        profs |= {u: UNKNOWN for u in pos["user_id"].unique().tolist() if u not in profs}
        self.user_ids = np.sort(np.fromiter(profs, np.int64, len(profs)))
        self.vocab = {c: {v: i + 1 for i, v in enumerate(sorted({p[j] for p in profs.values()} - {""}))}
                      for j, c in enumerate(DEMOGRAPHICS) if j}
        self.vocab |= {"category": _vocab(videos["category"]), "video_language": _vocab(videos["language"]),
                       "tags": _vocab(pd.Series([t for s in videos["tags"].fillna("") for t in str(s).split("|")
                                                 if t]))}
        user_demo = self._encode_users([profs[u] for u in self.user_ids.tolist()])
        item_feats, item_tags = self._encode_items(videos)
        sizes = {name: len(vocab) for name, vocab in self.vocab.items()} | {"age_bucket": len(AGE_EDGES) + 1}
        torch.manual_seed(p.seed)
        self.user_tower = UserTower(len(self.user_ids), len(self.video_ids), sizes, p.dim, p.hidden)
        self.item_tower = ItemTower(len(self.video_ids), sizes, p.dim, p.hidden)

        item = pos["_item"].to_numpy()
        feats = item_feats[item - 1]
        feats[:, 3] = self._video_age(item, utc_ns(pos["event_timestamp"]))
        u_row = np.searchsorted(self.user_ids, pos["user_id"].to_numpy())
        examples = {"user": u_row + 1, "demo": user_demo[u_row], "history": self._history(pos, include_self=False),
                    "item": item, "feats": feats, "tags": item_tags[item - 1]}
        freq = np.bincount(item, minlength=len(self.video_ids) + 1).astype(float)
        log_q = torch.from_numpy(np.log((freq + 1.0) / (freq + 1.0).sum())).float()
        with torch_threads(p.threads):
            self._train({name: torch.from_numpy(a) for name, a in examples.items()}, log_q)
            item_feats[:, 3] = self._video_age(np.arange(1, len(self.video_ids) + 1), self.end_ns)
            self._export(pos, user_demo, item_feats, item_tags)
        return self

    def _train(self, t: dict[str, torch.Tensor], log_q: torch.Tensor) -> None:
        p = self.params
        params = list(self.user_tower.parameters()) + list(self.item_tower.parameters())
        opt = torch.optim.Adam(params, lr=p.lr, weight_decay=p.weight_decay)
        gen = torch.Generator().manual_seed(p.seed)
        n = len(t["item"])
        for _ in range(p.epochs):
            for batch in torch.randperm(n, generator=gen).split(p.batch_size):
                if len(batch) < 2:
                    continue
                item = t["item"][batch]
                # Drop the id (and sometimes the history) so the tower also learns to serve unknown users.
                drop = torch.rand(len(batch), generator=gen) < p.id_dropout
                user = torch.where(drop, 0, t["user"][batch])
                history = torch.where((drop & (torch.rand(len(batch), generator=gen) < 0.5))[:, None], 0,
                                      t["history"][batch])
                u = self.user_tower(user, t["demo"][batch], history)
                v = self.item_tower(item, t["feats"][batch], t["tags"][batch])
                logits = u @ v.T / p.temperature + self.item_tower.bias(item).T - log_q[item][None, :]
                same = (item[:, None] == item[None, :]) & ~torch.eye(len(batch), dtype=torch.bool)
                loss = nn.functional.cross_entropy(logits.masked_fill(same, -1e9), torch.arange(len(batch)))
                opt.zero_grad()
                loss.backward()
                opt.step()

    @torch.inference_mode()
    def _export(self, pos: pd.DataFrame, user_demo: np.ndarray, item_feats: np.ndarray, item_tags: np.ndarray) -> None:
        """Precompute serving state: every known user's query vector and every item's vector.

        Item vectors are computed at the end of training (their age feature as of then); ``build_index``
        (the flow's indexing step) puts them in the ANN index that ``recommend`` searches.
        """
        p = self.params
        self.user_tower.eval()
        self.item_tower.eval()
        items = torch.arange(1, len(self.video_ids) + 1)
        v = self.item_tower(items, torch.from_numpy(item_feats), torch.from_numpy(item_tags))
        self.item_vectors = torch.cat([v, self.item_tower.bias(items)], 1).numpy()
        self.index: AnnIndex | None = None
        history = np.zeros((len(self.user_ids), p.history), np.int64)
        last = pos.groupby("user_id").tail(1)
        history[np.searchsorted(self.user_ids, last["user_id"].to_numpy())] = self._history(
            pos, include_self=True)[last.index.to_numpy()]
        self.user_vectors = self._query(torch.arange(1, len(self.user_ids) + 1), user_demo, history)
        self.cold: dict[tuple[int, ...], np.ndarray] = {}

    def build_index(self, params: HnswParams | None = None) -> AnnIndex:
        """Index the item vectors of this fit (``params.ann`` unless given); ``recommend`` searches it."""
        self.index = AnnIndex.build(self.item_vectors, self.video_ids, params or self.params.ann)
        return self.index

    def _query(self, user: torch.Tensor, demo: np.ndarray, history: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            u = self.user_tower(user, torch.from_numpy(demo), torch.from_numpy(history))
        return torch.cat([u / self.params.temperature, torch.ones(len(u), 1)], 1).numpy()

    def query_vectors(self, user_ids: np.ndarray, users: pd.DataFrame | None = None) -> np.ndarray:
        """ANN query vector per user: precomputed for known users, from demographics for the others."""
        row = np.searchsorted(self.user_ids, user_ids).clip(0, len(self.user_ids) - 1)
        known = self.user_ids[row] == user_ids
        out = self.user_vectors[row].copy()
        if not known.all():
            new = profiles(users, user_ids[~known])
            demo = self._encode_users([new.get(u, UNKNOWN) for u in user_ids[~known].tolist()])
            keys = [tuple(d) for d in demo.tolist()]
            missing = sorted(set(keys) - self.cold.keys())
            if missing:  # one forward pass per distinct demographic profile, then cached
                with torch_threads(1):
                    vectors = self._query(torch.zeros(len(missing), dtype=torch.int64), np.array(missing),
                                          np.zeros((len(missing), self.params.history), np.int64))
                self.cold.update(zip(missing, vectors, strict=True))
            out[~known] = np.array([self.cold[k] for k in keys])
        return out

    def _score_matrix(self, user_ids: np.ndarray, users: pd.DataFrame | None, at: pd.Timestamp | None
                      ) -> np.ndarray:
        return self.query_vectors(user_ids, users) @ self.item_vectors.T

    def _candidates(self, user_ids: np.ndarray, n: int, users: pd.DataFrame | None, at: pd.Timestamp | None
                    ) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            raise RuntimeError("TwoTower.recommend searches the ANN index: call build_index() after fit()")
        return self.index.search(self.query_vectors(user_ids, users), n)


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


# ----- stage 2: ranking
@dataclass
class Ranker:
    """LightGBM over (user, video) rows: lambdarank grouped by user, or binary on the label.

    Categorical columns keep the categories seen in training, so a value first seen at serving time is
    "missing" to the trees instead of silently taking another category's code.
    """

    features: list[str]
    categorical: list[str] = field(default_factory=list)
    objective: str = "lambdarank"
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    categories: dict[str, list[Any]] = field(default_factory=dict)
    booster: Any = None

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 0.02, "num_leaves": 15, "min_data_in_leaf": 200, "feature_fraction": 0.9,
        "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0, "num_boost_round": 500,
        "early_stopping_rounds": 100, "num_threads": 1}
    """Slow, heavily regularised trees: ranker windows hold ~1k positives among ~100k candidate rows, and
    on VideoWorld these beat the usual 0.05 / 31 leaves / 50 per leaf by 4-6% recall@10. One thread:
    on the shared 2-core machine two were 3x slower."""

    def _matrix(self, rows: Mapping[str, Any]) -> np.ndarray:
        """The (rows, features) float matrix LightGBM reads: numbers, NaN for missing, category codes.

        One encoding for training, batch scoring and a single request: LightGBM's own pandas path does
        the same (categories to codes, unknown to NaN) but costs milliseconds of bookkeeping per call.
        """
        missing = [c for c in self.features if c not in rows]
        if missing:
            raise ValueError(f"ranker input lacks feature columns {missing}")
        return np.column_stack([self._codes(c, rows[c]) if c in self.categories else as_floats(rows[c])
                                for c in self.features])

    def _codes(self, name: str, values: Any) -> np.ndarray:
        """Index of each value among the training categories; NaN for missing or never-seen values."""
        codes = self._category_index[name].get_indexer(np.asarray(values, dtype=object)).astype(float)
        codes[codes < 0] = np.nan  # None, NaN and unseen values are not in the index
        return codes

    @cached_property
    def _category_index(self) -> dict[str, pd.Index]:
        return {c: pd.Index(cats, dtype=object) for c, cats in self.categories.items()}

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None, label: str = "positive",
            group: str = "user_id") -> Ranker:
        """Train on ``train`` (early-stopped on ``valid`` when given); rows of a group need not be adjacent."""
        import lightgbm as lgb

        if self.objective not in ("lambdarank", "binary"):
            raise ValueError(f"objective must be 'lambdarank' or 'binary', got {self.objective!r}")
        self.categories = {c: sorted(train[c].dropna().astype(str).unique()) for c in self.categorical}
        self.__dict__.pop("_category_index", None)  # refit: new categories
        cfg = self.DEFAULTS | self.params
        rounds, stop = cfg.pop("num_boost_round"), cfg.pop("early_stopping_rounds")
        cfg |= {"objective": self.objective, "seed": self.seed, "deterministic": True, "verbose": -1}
        if self.objective == "lambdarank":
            cfg |= {"metric": "ndcg", "eval_at": [10]}
        else:
            cfg |= {"metric": "auc"}

        def dataset(frame: pd.DataFrame, reference: Any = None) -> Any:
            frame = frame.sort_values(group, kind="stable")
            sizes = frame.groupby(group, sort=False).size().to_numpy() if self.objective == "lambdarank" else None
            return lgb.Dataset(self._matrix(frame), frame[label].to_numpy(), group=sizes,
                               feature_name=self.features, categorical_feature=self.categorical or "auto",
                               reference=reference, free_raw_data=False)

        dtrain = dataset(train)
        sets, callbacks = [dtrain], []
        if valid is not None:
            sets.append(dataset(valid, dtrain))
            callbacks.append(lgb.early_stopping(stop, verbose=False))
        self.booster = lgb.train(cfg, dtrain, num_boost_round=rounds, valid_sets=sets, callbacks=callbacks)
        return self

    def predict(self, rows: Mapping[str, Any]) -> np.ndarray:
        """A ranking score per row (higher is better; a probability for the binary objective).

        ``rows`` is a DataFrame or any column mapping (e.g. a request's ``Columns``).
        """
        if self.booster is None:
            raise RuntimeError("Ranker.predict called before fit")
        return self.booster.predict(self._matrix(rows), num_iteration=self.booster.best_iteration or None)


# ----- stage 3: re-ranking
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

