"""Harmful content moderation service: the champion's per-class probabilities and an enforcement decision.

``POST /moderate`` scores one post (text, optional image embedding, the author's id, optionally the
post's id) with the author's and the post's online features and answers each class's probability and a
decision: ``remove`` (a class at or above its removal threshold), ``review`` (demoted and queued for a
human: a class in its review band) or ``allow``, with the class and threshold that decided. A queued
post lands in the review queue exactly once, however often it is sent. ``GET /readyz`` answers with the
model tag; the Swagger UI is at ``/``, the OpenAPI spec at ``/docs.json``.

Run by hand from the repository root::

    BENTOML_HOME=$CASEBOOK_HOME/models/bentoml \\
        bentoml serve services.harmful_content.service:HarmfulContent --host 127.0.0.1 --port 3000
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

import bentoml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.core.api import EntityId
from pipelines.core.review import ReviewQueue
from pipelines.core.service_base import CaseService, ChampionHandler, handler_api, service_options, serving_params
from pipelines.core.settings import Paths
from pipelines.harmful_content.case import CASE as SPEC
from pipelines.harmful_content.schema import IMAGE_COLUMNS

SERVING = serving_params(SPEC)


class ModerateRequest(BaseModel):
    """One post; strict JSON types, and an unknown field is an error, not ignored."""

    model_config = ConfigDict(strict=True, extra="forbid")

    user_id: EntityId = Field(description="The author (a user of the platform); an unknown id has no history.")
    text: str = Field(min_length=1, max_length=SERVING.max_text_chars, description="The post's text.")
    image_embedding: list[float] | None = Field(
        default=None, min_length=len(IMAGE_COLUMNS), max_length=len(IMAGE_COLUMNS),
        description=f"The post image's embedding: {len(IMAGE_COLUMNS)} finite numbers; omit for a text post.")
    post_id: EntityId | None = Field(default=None, description="The post's id (its review-queue key); default: "
                                                               "a hash of author, text and image.")

    @field_validator("image_embedding")
    @classmethod
    def _finite(cls, values: list[float] | None) -> list[float] | None:
        if values is not None and not all(math.isfinite(v) and abs(v) <= 50 for v in values):
            raise ValueError("every value must be a finite number within [-50, 50]")
        return values


class DecidedBy(BaseModel):
    harm_class: str
    probability: float
    threshold: float


class ModerateResponse(BaseModel):
    model_tag: str
    post_id: int
    decision: Literal["remove", "review", "allow"]
    decided_by: list[DecidedBy] = Field(description="The class and threshold that decided: one entry, none for "
                                                    "allow (a list, so the published schema needs no null).")
    probabilities: dict[str, float] = Field(description="Probability of each harm class.")
    queued: bool = Field(description="True when this call added the post to the review queue (once per post).")
    author_known: bool


class Moderator(ChampionHandler):
    """The request path without HTTP: online features by author and post, one model call, the queue."""

    case = SPEC

    @cached_property
    def queue(self) -> ReviewQueue:
        """The home's review queue, opened on first use (its table is created if need be)."""
        return ReviewQueue.of(Paths.from_env(), SPEC.name)

    def moderate(self, user_id: int, text: str, image_embedding: list[float] | None = None,
                 post_id: int | None = None) -> ModerateResponse:
        import pandas as pd

        if post_id is None:
            digest = hashlib.sha256(repr((user_id, text, image_embedding)).encode()).digest()
            post_id = int.from_bytes(digest[:8], "big") >> 2 or 1
        author = self.reader.entity_rows(("user_id",), [(user_id,)])[0]
        post = self.reader.entity_rows(("post_id",), [(post_id,)])[0]
        row: dict[str, Any] = {**author, **post, "text": text}
        if image_embedding is not None:
            row |= dict(zip(IMAGE_COLUMNS, image_embedding, strict=True))
        p = self.model.predict(pd.DataFrame([row]))[0]
        probabilities = {c: float(v) for c, v in zip(self.model.classes, p, strict=True)}
        decision, cls, threshold = self.model.decide(p)
        queued = False
        if decision == "review":
            queued = self.queue.enqueue(post_id, reason=f"{cls} >= {threshold:.4f}", scores=probabilities,
                                        payload={"user_id": user_id, "text": text, "model_tag": self.tag,
                                                 "has_image": image_embedding is not None,
                                                 "at": datetime.now(UTC).isoformat()})
        decided = [] if cls is None else [DecidedBy(harm_class=cls, probability=probabilities[cls],
                                                    threshold=float(threshold))]
        return ModerateResponse(model_tag=self.tag, post_id=post_id, decision=decision, decided_by=decided,
                                probabilities=probabilities, queued=queued,
                                author_known=author.get("author_posts") is not None)

    def warm_up(self) -> None:
        self.reader.entity_rows(("user_id",), [(0,)])  # loads SQLite pages; scoring alone queues nothing
        import pandas as pd

        self.model.predict(pd.DataFrame([{"text": "warm up"}]))


@bentoml.service(**service_options(SPEC))
class HarmfulContent(CaseService):
    handler_type = Moderator
    moderate = handler_api("/moderate", ModerateRequest, ModerateResponse,
                           "Per-class harm probabilities and a decision (remove / review / allow) for one post.")
