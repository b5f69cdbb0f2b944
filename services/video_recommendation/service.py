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

from datetime import datetime
from typing import Any, Literal

import bentoml
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipelines.core.api import EntityId, RequestTime
from pipelines.core.service_base import CaseService, ChampionHandler, handler_api, service_options, serving_params
from pipelines.video_recommendation.case import CASE as SPEC

SERVING = serving_params(SPEC)


class RecommendRequest(BaseModel):
    """One request; strict JSON types, so ``"5"`` is not a user id and typos are errors."""

    model_config = ConfigDict(strict=True, extra="forbid")

    user_id: EntityId = Field(description="The user to recommend for; an unknown id is a cold-start user.")
    k: int = Field(default=SERVING.default_k, ge=1, le=SERVING.max_k, description="Videos to return.")
    at: RequestTime | None = Field(
        default=None, description="Request time (ISO 8601 with zone, 1970 to 2200); default: the end of the "
                                  "model's data.")
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


class Recommender(ChampionHandler):
    """The request path without HTTP: profile lookup, the two-stage model, online features by entity."""

    case = SPEC
    cached_views = ("video_profile", "video_engagement")

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

    def warm_up(self) -> None:
        self.recommend(2**62, 1)  # a cold-start user: loads the model's lazy parts and SQLite pages


@bentoml.service(**service_options(SPEC))
class VideoRecommendation(CaseService):
    handler_type = Recommender
    recommend = handler_api("/recommend", RecommendRequest, RecommendResponse,
                            "Top k videos for a user, each with the stage(s) that proposed it.")
