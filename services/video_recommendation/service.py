"""Homepage video recommendation service: candidate generation -> ranking -> re-ranking, over HTTP.

``POST /recommend`` returns the top k videos for a user, each with the generators ("stage") that proposed
it. A user without a profile or history is a cold-start user: the demographic and popularity generators
(and the two-tower model's demographic query) still answer, using the request's optional context.
``GET /readyz`` answers 200 with the model tag once loaded; BentoML adds ``/metrics``, ``/livez``, the
Swagger UI at ``/`` and the OpenAPI spec at ``/docs.json``.

Run by hand from the repository root::

    BENTOML_HOME=$CASEBOOK_HOME/models/bentoml \\
        bentoml serve services.video_recommendation.service:VideoRecommendation --host 127.0.0.1 --port 3000
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import bentoml
import numpy as np
import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from pipelines.core import feast as core_feast
from pipelines.core import registry
from pipelines.core.api import EntityId, ReadyzWithTag, serving_params
from pipelines.core.online import OnlineReader
from pipelines.core.settings import Paths, apply_privacy_defaults
from pipelines.video_recommendation.features import SERVICE as FEATURE_SERVICE

CASE = "video_recommendation"
SERVING = serving_params(CASE, {"max_k": 50, "default_k": 10, "workers": 1, "item_cache_ttl_s": 3600})
ITEM_VIEWS = ("video_profile", "video_engagement")
"""Keyed by video alone and materialized daily: kept per worker for ``item_cache_ttl_s`` seconds."""


class RecommendRequest(BaseModel):
    """One request; strict JSON types, so ``"5"`` is not a user id and typos are errors."""

    model_config = ConfigDict(strict=True, extra="forbid")

    user_id: EntityId = Field(description="The user to recommend for; an unknown id is a cold-start user.")
    k: int = Field(default=SERVING["default_k"], ge=1, le=SERVING["max_k"], description="Videos to return.")
    at: AwareDatetime | None = Field(
        default=None, description="Request time (ISO 8601 with zone); default: the end of the model's data.")
    country: str | None = Field(default=None, max_length=8, description="Context for a user without a profile.")
    language: str | None = Field(default=None, max_length=8, description="Context for a user without a profile.")
    gender: Literal["f", "m", "u"] | None = Field(default=None, description="Context for a user without a profile.")
    age: int | None = Field(default=None, ge=13, le=120, description="Context for a user without a profile.")


class RecommendedVideo(BaseModel):
    video_id: int
    rank: int
    score: float = Field(description="The ranker's score before re-ranking (higher is better).")
    stage: list[str] = Field(description="The candidate generators that proposed this video.")


class RecommendResponse(BaseModel):
    model_tag: str
    user_known: bool = Field(description="False: no profile or history; demographic/popular candidates.")
    videos: list[RecommendedVideo]


@dataclass
class Recommender:
    """The request path without HTTP: profile lookup, the two-stage model, online features by entity."""

    tag: str
    model: Any  # TwoStageRecommender
    reader: OnlineReader

    @classmethod
    def from_registry(cls, paths: Paths | None = None) -> Recommender:
        paths = registry.use_home(paths)
        tag, model = registry.load_champion(CASE)
        reader = OnlineReader(core_feast.store(paths), FEATURE_SERVICE, cached_views=ITEM_VIEWS,
                              ttl_s=SERVING["item_cache_ttl_s"])
        return cls(tag, model, reader)

    def features(self, rows: dict[str, Any]) -> dict[str, list[Any]]:
        """The FeatureService's online values for each (user, video, category) row."""
        category = ["unknown" if c is None else c for c in rows["category"].tolist()]
        return self.reader.read({"user_id": rows["user_id"].tolist(), "video_id": rows["video_id"].tolist(),
                                 "category": category})

    def recommend(self, user_id: int, k: int, at: datetime | None = None, **context: Any) -> RecommendResponse:
        profile = self.reader.entity_rows(("user_id",), [(user_id,)])[0]
        user_known = profile["country"] is not None or user_id in self.model.seen
        known = {c: profile[c] for c in ("age", "gender", "country", "language")}
        demo = {c: known[c] if known[c] is not None else context.get(c) for c in known}
        users = pd.DataFrame([{"user_id": user_id, **demo}])
        when = pd.Timestamp(at) if at is not None else self.model.as_of
        top = self.model.recommend(np.array([user_id]), k, when, self.features, users, self.model.seen)
        videos = [RecommendedVideo(video_id=v, rank=r, score=s, stage=st.split(",")) for v, r, s, st in zip(
            top["video_id"].tolist(), top["rank"].tolist(), top["score"].tolist(), top["stage"].tolist(), strict=True)]
        return RecommendResponse(model_tag=self.tag, user_known=user_known, videos=videos)


@bentoml.service(
    name=CASE,
    http={"host": "127.0.0.1", "port": 3000},
    workers=SERVING["workers"],
    traffic={"timeout": 30},
)
class VideoRecommendation:
    """Loads the champion and opens the feature store once per worker, at start."""

    def __init__(self) -> None:
        import torch

        apply_privacy_defaults()
        torch.set_num_threads(1)  # one user per request: intra-op threads only contend with other workers
        self.recommender = Recommender.from_registry()
        self.model_tag = self.recommender.tag
        self.recommender.recommend(2**62, 1)  # a cold-start request warms the model and SQLite before traffic

    # ``async def`` although the body never awaits, as in the ad_click service: a request is ~5 ms of
    # GIL-bound Python on a local SQLite read, so BentoML's thread pool would add hand-offs and GIL contention
    # without parallelism. With a remote online store make it a plain ``def`` so network waits overlap.
    @bentoml.api(route="/recommend", input_spec=RecommendRequest, output_spec=RecommendResponse)
    async def recommend(self, user_id: int, k: int = 10, at: datetime | None = None, country: str | None = None,
                        language: str | None = None, gender: str | None = None, age: int | None = None
                        ) -> RecommendResponse:
        """Top k videos for a user, each with the stage(s) that proposed it."""
        return self.recommender.recommend(user_id, k, at, country=country, language=language, gender=gender,
                                          age=age)


VideoRecommendation.add_asgi_middleware(ReadyzWithTag)  # type: ignore[attr-defined]  # a Service at runtime
