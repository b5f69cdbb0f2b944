"""The served two-stage recommender: candidate generation -> ranking -> re-ranking, as one object.

The same ``recommend`` code runs in the evaluate step (features from Feast's offline store as of the test
time) and in the service (features from Feast's online store), so offline metrics measure what ships.
Feature access is a callable the caller passes in; everything else is state saved with the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.video_recommendation.features import RANKER_CATEGORICAL, RANKER_NUMERIC
from pipelines.video_recommendation.model import CandidateGenerator, Ranker, rerank

SCORED_BY = ("popular", "trending", "demographic_popular", "als", "two_tower")
"""Every generator scores every candidate pair, whoever proposed it: the ranker learns how far to trust each."""
REQUEST_FEATURES = [f"{g}_score" for g in SCORED_BY] + ["video_age_days"]
RANKER_FEATURES = RANKER_NUMERIC + REQUEST_FEATURES + RANKER_CATEGORICAL
Features = Callable[[pd.DataFrame], pd.DataFrame]
"""Takes entity rows (user_id, video_id, category, event_timestamp); returns them with the Feast features."""


def request_features(pairs: pd.DataFrame, generators: dict[str, CandidateGenerator], videos: pd.DataFrame,
                     users: pd.DataFrame | None) -> pd.DataFrame:
    """Add the features known only at request time: generator scores of the pair and the video's age."""
    out = pairs.copy()
    for name in SCORED_BY:
        if name in generators:
            out[f"{name}_score"] = generators[name].score_pairs(out["user_id"].to_numpy(), out["video_id"].to_numpy(),
                                                                users=users)
    upload = out["video_id"].map(videos.set_index("video_id")["upload_ts"])
    out["video_age_days"] = (pd.to_datetime(out["event_timestamp"], utc=True)
                             - pd.to_datetime(upload, utc=True)).dt.total_seconds() / 86_400
    return out


def ranker_inputs(rows: pd.DataFrame, features: Features, generators: dict[str, CandidateGenerator],
                  videos: pd.DataFrame, users: pd.DataFrame | None) -> pd.DataFrame:
    """Entity rows with every ranker input: Feast's features, then the request-time ones."""
    frame = features(rows)
    # Online reads arrive as Python objects (None for missing): numbers for the trees, NaN for missing.
    frame[RANKER_NUMERIC] = frame[RANKER_NUMERIC].apply(pd.to_numeric, errors="coerce")
    return request_features(frame, generators, videos, users)


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

    def candidates(self, user_ids: np.ndarray, at: pd.Timestamp, users: pd.DataFrame | None,
                   exclude: dict[int, set[int]] | None) -> pd.DataFrame:
        """Every generator's top ``per_generator`` per user, one row per (user, video, stage)."""
        rows = [(u, v, name) for name, gen in self.generators.items()
                for u, recs in gen.recommend(user_ids, self.per_generator, exclude, at, users).items()
                for v, _ in recs]
        return pd.DataFrame(rows, columns=["user_id", "video_id", "stage"]).astype(
            {"user_id": np.int64, "video_id": np.int64})

    def candidate_frame(self, user_ids: np.ndarray, at: pd.Timestamp, features: Features,
                        users: pd.DataFrame | None = None, exclude: dict[int, set[int]] | None = None
                        ) -> pd.DataFrame:
        """One row per distinct (user, candidate) with ``stage`` and every ranker feature as of ``at``.

        The ranker is trained on these rows too (labelled by what the user engaged with next), so it
        learns to order exactly the kind of list it will be given.
        """
        cands = self.candidates(np.asarray(user_ids, np.int64), at, users, exclude)
        stages = cands.groupby(["user_id", "video_id"], sort=False)["stage"].agg(",".join).reset_index()
        pairs = stages.merge(self.videos[["video_id", "category", "upload_ts"]], on="video_id", how="left")
        pairs["event_timestamp"] = at
        return ranker_inputs(pairs, features, self.generators, self.videos, users)

    def recommend(self, user_ids: np.ndarray, k: int, at: pd.Timestamp, features: Features,
                  users: pd.DataFrame | None = None, exclude: dict[int, set[int]] | None = None) -> pd.DataFrame:
        """Top ``k`` per user: user_id, video_id, score, stage (every generator that proposed it), rank."""
        return self.rank(self.candidate_frame(user_ids, at, features, users, exclude), k, at, exclude)

    def rank(self, frame: pd.DataFrame, k: int, at: pd.Timestamp, exclude: dict[int, set[int]] | None = None,
             rerank_lists: bool = True) -> pd.DataFrame:
        """Score a candidate frame with the ranker and keep the top ``k`` per user, re-ranked by default."""
        cols = ["user_id", "video_id", "score", "stage", "rank"]
        if frame.empty:
            return pd.DataFrame(columns=cols)
        frame = frame.assign(score=self.ranker.predict(frame))
        if rerank_lists:
            return rerank(frame, k, at, exclude=exclude, **self.rerank_params)[cols]
        top = frame.sort_values(["user_id", "score"], ascending=[True, False], kind="stable").groupby("user_id").head(k)
        return top.assign(rank=top.groupby("user_id").cumcount() + 1)[cols].reset_index(drop=True)
