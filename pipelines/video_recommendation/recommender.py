"""The served two-stage recommender: candidate generation -> ranking -> re-ranking, as one object.

The same code runs in the evaluate step (features from Feast's offline store as of the test time, many
users at once) and in the service (features from Feast's online store, one user), so offline metrics
measure what ships. Feature access is a callable the caller passes in; everything else is state saved
with the model.

Candidates travel as ``Columns`` (column name -> one array per row), not DataFrames: a request holds one
user's ~200 candidates, where each pandas operation costs ~0.1-1 ms of bookkeeping and the models
themselves take well under a millisecond. Batch callers wrap the result in a DataFrame
(``candidate_frame``, ``rank``); the single-user path (``recommend``) never builds one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from pipelines.core.recsys.arrays import NAT, as_floats, catalog_positions, utc_ns
from pipelines.core.recsys.generators import CandidateGenerator
from pipelines.core.recsys.ranker import Ranker
from pipelines.core.recsys.rerank import merge_stages, rerank
from pipelines.video_recommendation.features import RANKER_CATEGORICAL, RANKER_NUMERIC

SCORED_BY = ("popular", "trending", "demographic_popular", "als", "two_tower", "co_visit")
"""Every generator scores every candidate pair, whoever proposed it: the ranker learns how far to trust each."""
REQUEST_FEATURES = [f"{g}_{x}" for g in SCORED_BY for x in ("score", "rank")] + ["video_age_days"]
RANKER_FEATURES = RANKER_NUMERIC + REQUEST_FEATURES + RANKER_CATEGORICAL
Columns = dict[str, Any]
"""Column name -> one value per row (numpy array, list or Series); ``event_timestamp`` may be one scalar."""
Features = Callable[[Columns], Mapping[str, Any]]
"""Takes entity columns (user_id, video_id, category, event_timestamp); returns the Feast feature columns,
one value per entity row in the same order."""
RESULT = ("user_id", "video_id", "score", "stage", "rank")


@dataclass(frozen=True)
class VideoLookup:
    """Per-video attributes as arrays sorted by id: re-ranking and request features look them up by id."""

    video_ids: np.ndarray
    upload_ts: np.ndarray  # datetime64[ns], UTC
    category: np.ndarray  # object; None where unknown

    @classmethod
    def of(cls, videos: pd.DataFrame) -> VideoLookup:
        v = videos.sort_values("video_id")
        upload = pd.to_datetime(v["upload_ts"], utc=True).dt.tz_convert(None).to_numpy("datetime64[ns]")
        return cls(v["video_id"].to_numpy(np.int64), upload,
                   v["category"].astype(object).where(v["category"].notna(), None).to_numpy(object))

    def attributes(self, video_ids: np.ndarray) -> Columns:
        """``category`` and ``upload_ts`` of each id (None / NaT for an id outside the catalog)."""
        if not len(video_ids):
            return {"category": np.empty(0, object), "upload_ts": np.empty(0, "datetime64[ns]")}
        pos, known = catalog_positions(self.video_ids, video_ids)
        return {"category": np.where(known, self.category[pos], None),
                "upload_ts": np.where(known, self.upload_ts[pos], np.datetime64("NaT", "ns"))}


def request_features(rows: Columns, generators: dict[str, CandidateGenerator], lookup: VideoLookup,
                     users: pd.DataFrame | None, at_ns: int | np.ndarray) -> Columns:
    """The features known only at request time: each generator's score and rank of the pair, the video's age."""
    user, video = np.asarray(rows["user_id"], np.int64), np.asarray(rows["video_id"], np.int64)
    out: Columns = {}
    for name in SCORED_BY:
        if name in generators:
            out[f"{name}_score"], out[f"{name}_rank"] = generators[name].pair_scores(user, video, users=users)
    upload = utc_ns(lookup.attributes(video)["upload_ts"])
    out["video_age_days"] = np.where(upload == NAT, np.nan, (at_ns - upload) / 86_400e9)
    return out


def ranker_inputs(rows: Columns, features: Features, generators: dict[str, CandidateGenerator],
                  lookup: VideoLookup, users: pd.DataFrame | None, at_ns: int | np.ndarray) -> Columns:
    """Entity rows with every ranker input: Feast's features, then the request-time ones."""
    got = dict(features(rows))
    # Online reads arrive as Python objects (None for missing): numbers for the trees, NaN for missing.
    got |= {c: as_floats(got[c]) for c in RANKER_NUMERIC}
    return {**rows, **got, **request_features(rows, generators, lookup, users, at_ns)}


@dataclass
class TwoStageRecommender:
    """Generators propose, the ranker orders, ``rerank`` finishes the list. Picklable."""

    generators: dict[str, CandidateGenerator]
    ranker: Ranker | None  # None while the candidates are being used to train it
    videos: pd.DataFrame  # video_id, upload_ts, category: what re-ranking and request features need
    per_generator: int = 50
    rerank_params: dict[str, Any] = field(default_factory=dict)
    seen: dict[int, set[int]] = field(default_factory=dict)
    """Each known user's positively engaged videos up to ``as_of``; never recommended again."""
    as_of: pd.Timestamp | None = None
    """The end of the data the models learned from: the service's clock on a simulated platform."""

    @cached_property
    def lookup(self) -> VideoLookup:
        """``videos`` as sorted arrays, built once (and pickled with the model)."""
        return VideoLookup.of(self.videos)

    def candidates(self, user_ids: np.ndarray, at: pd.Timestamp, users: pd.DataFrame | None,
                   exclude: dict[int, set[int]] | None) -> Columns:
        """Every generator's top ``per_generator`` per user, one row per distinct (user, video).

        ``stage`` names every generator that proposed the video, in generator order ("als,two_tower");
        rows keep the order in which a (user, video) was first proposed.
        """
        user: list[int] = []
        video: list[int] = []
        bit: list[int] = []
        for b, gen in enumerate(self.generators.values()):
            for u, recs in gen.recommend(user_ids, self.per_generator, exclude, at, users).items():
                user += [u] * len(recs)
                video += [v for v, _ in recs]
                bit += [b] * len(recs)
        u, v = np.array(user, np.int64), np.array(video, np.int64)
        if not len(u):
            return {"user_id": u, "video_id": v, "stage": np.empty(0, object)}
        rows, stages = merge_stages(u, v, np.array(bit), list(self.generators), np.arange(len(u)))
        first_proposed = np.argsort(rows, kind="stable")
        rows, stages = rows[first_proposed], stages[first_proposed]
        return {"user_id": u[rows], "video_id": v[rows], "stage": stages}

    def candidate_columns(self, user_ids: np.ndarray, at: pd.Timestamp, features: Features,
                          users: pd.DataFrame | None = None, exclude: dict[int, set[int]] | None = None,
                          as_of: pd.Series | None = None) -> Columns:
        """One row per distinct (user, candidate) with ``stage`` and every ranker feature as of ``at``, or as
        of each user's own time in ``as_of`` (user_id -> Timestamp: a per-user split asks each user then)."""
        cands = self.candidates(np.asarray(user_ids, np.int64), at, users, exclude)
        when: Any = at if as_of is None else as_of.reindex(cands["user_id"]).reset_index(drop=True)
        rows = {**cands, **self.lookup.attributes(cands["video_id"]), "event_timestamp": when}
        return ranker_inputs(rows, features, self.generators, self.lookup, users, utc_ns(when))

    def candidate_frame(self, user_ids: np.ndarray, at: pd.Timestamp, features: Features,
                        users: pd.DataFrame | None = None, exclude: dict[int, set[int]] | None = None,
                        as_of: pd.Series | None = None) -> pd.DataFrame:
        """``candidate_columns`` as a DataFrame, for batch work.

        The ranker is trained on these rows too (labelled by what the user engaged with next), so it
        learns to order exactly the kind of list it will be given.
        """
        cols = self.candidate_columns(user_ids, at, features, users, exclude, as_of)
        return pd.DataFrame(cols, index=pd.RangeIndex(len(cols["user_id"])))

    def recommend(self, user_ids: np.ndarray, k: int, at: pd.Timestamp, features: Features,
                  users: pd.DataFrame | None = None, exclude: dict[int, set[int]] | None = None) -> Columns:
        """Top ``k`` per user as columns: user_id, video_id, score, stage (every proposing generator), rank.

        The request path: no DataFrame is built on the way.
        """
        cols = self.candidate_columns(user_ids, at, features, users, exclude)
        if not len(cols["user_id"]):
            return {c: np.empty(0) for c in RESULT}
        out = rerank({**cols, "score": self.ranker.predict(cols)}, k, at, exclude=exclude, **self.rerank_params)
        return {c: out[c] for c in RESULT}

    def rank(self, frame: pd.DataFrame, k: int, at: pd.Timestamp, exclude: dict[int, set[int]] | None = None,
             rerank_lists: bool = True) -> pd.DataFrame:
        """Score a candidate frame with the ranker and keep the top ``k`` per user, re-ranked by default."""
        if frame.empty:
            return pd.DataFrame(columns=list(RESULT))
        frame = frame.assign(score=self.ranker.predict(frame))
        if rerank_lists:
            out = rerank(frame, k, at, exclude=exclude, **self.rerank_params)
            return pd.DataFrame({c: out[c] for c in RESULT})
        top = frame.sort_values(["user_id", "score"], ascending=[True, False], kind="stable").groupby("user_id").head(k)
        return top.assign(rank=top.groupby("user_id").cumcount() + 1)[list(RESULT)].reset_index(drop=True)
