"""Ad click ranking service: Feast online features + the registry's champion model, over HTTP.

``POST /rank`` scores a user's candidate ads as if each were shown in the top slot and returns the top
k by calibrated click probability, after dropping ads whose targeting excludes the user. ``GET /readyz``
answers 200 with the model tag once the model and feature store are loaded; BentoML adds ``/metrics``,
``/livez``, the Swagger UI at ``/`` and the OpenAPI spec at ``/docs.json``.

Run by hand from the repository root::

    BENTOML_HOME=$CASEBOOK_HOME/models/bentoml \\
        bentoml serve services.ad_click.service:AdClick --host 127.0.0.1 --port 3000
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import bentoml
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.ad_click.case import CASE as SPEC
from pipelines.core.api import EntityId
from pipelines.core.service_base import CaseService, ChampionHandler, handler_api, service_options, serving_params

SERVING = serving_params(SPEC)
SCORING_POSITION = 1
"""Every candidate is scored as if shown in the top slot, so position bias does not pick the winner."""


class RankRequest(BaseModel):
    """One ranking request; strict JSON types, so ``"5"`` is not a user id and typos are errors."""

    model_config = ConfigDict(strict=True, extra="forbid")

    user_id: EntityId = Field(description="The user to rank for; an unknown id is a cold-start user.")
    candidate_ad_ids: list[EntityId] = Field(
        min_length=1, max_length=SERVING.max_candidates, description="Distinct ad ids to rank.",
        json_schema_extra={"uniqueItems": True},
    )
    device: Literal["mobile", "desktop", "tablet"] = "mobile"
    hour: int | None = Field(default=None, ge=0, le=23, description="UTC hour of the request; default now.")
    k: int = Field(default=SERVING.default_k, ge=1, le=SERVING.max_candidates, description="Ads to return.")

    @field_validator("candidate_ad_ids")
    @classmethod
    def _distinct(cls, ids: list[int]) -> list[int]:
        seen: set[int] = set()
        dups = sorted({a for a in ids if a in seen or seen.add(a)})  # type: ignore[func-returns-value]
        if dups:
            raise ValueError(f"duplicate ad ids: {dups[:10]}")
        return ids


class ScoredAd(BaseModel):
    ad_id: int
    p_click: float = Field(description="Calibrated probability of a click if shown in position 1.")
    cold_start: bool = Field(description="No click history for this ad (unknown or new): prior-based score.")


class RankResponse(BaseModel):
    model_tag: str
    user_known: bool = Field(description="False: no profile for this user, so no targeting filter applied.")
    ads: list[ScoredAd] = Field(description="Top k by p_click, highest first.")
    filtered_out: list[int] = Field(description="Candidates whose targeting (country, age) excludes the user")


USER_KEY, AD_KEY = ("user_id",), ("ad_id",)
PAIR_KEY = ("user_id", "ad_id")


class Ranker(ChampionHandler):
    """The request path without HTTP: online reads by entity, targeting filter, one model call.

    Reads the user's views once, the ad views once per ad (from the worker's cache when warm) and the
    user-ad view once per pair, instead of every view for every (user, ad) row: the same FeatureService
    features, a fraction of the work. No pandas on this path.
    """

    case = SPEC
    cached_views = ("ad_profile", "ad_ctr")

    def features(self, user_id: int, ad_ids: list[int]) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                   list[dict[str, Any]]]:
        """The user's, each ad's and each (user, ad) pair's online features; missing values are None."""
        user = self.reader.entity_rows(USER_KEY, [(user_id,)])[0]
        ads = self.reader.entity_rows(AD_KEY, [(a,) for a in ad_ids])
        pairs = self.reader.entity_rows(PAIR_KEY, [(user_id, a) for a in ad_ids])
        return user, ads, pairs

    def rank(self, user_id: int, candidate_ad_ids: list[int], device: str = "mobile",
             hour: int | None = None, k: int = 10) -> RankResponse:
        user, ads, pairs = self.features(user_id, candidate_ad_ids)
        user_known = user["country"] is not None
        keep: list[int] = []
        filtered: list[int] = []
        for i, ad in enumerate(ads):
            (filtered if user_known and _excluded(ad, user) else keep).append(i)
        scored: list[ScoredAd] = []
        if keep:
            columns: dict[str, Any] = dict(user)
            columns |= {f: [ads[i][f] for i in keep] for f in ads[0]}
            columns |= {f: [pairs[i][f] for i in keep] for f in pairs[0]}
            columns |= {"ad_id": [candidate_ad_ids[i] for i in keep], "position": SCORING_POSITION,
                        "device": device, "hour": datetime.now(UTC).hour if hour is None else hour}
            p = self.model.predict_columns(columns, len(keep))
            for j in np.argsort(-p, kind="stable")[:k]:
                i = keep[j]
                scored.append(ScoredAd(ad_id=candidate_ad_ids[i], p_click=float(p[j]),
                                       cold_start=ads[i]["ad_impressions"] is None))
        return RankResponse(model_tag=self.tag, user_known=user_known, ads=scored,
                            filtered_out=[candidate_ad_ids[i] for i in filtered])

    def warm_up(self) -> None:
        self.rank(0, [0], hour=0)  # an unknown pair: loads the model's lazy parts and SQLite pages


def _excluded(ad: dict[str, Any], user: dict[str, Any]) -> bool:
    """Targeting (country, age range) of a known ad excludes the user; a missing value excludes nothing."""
    if ad["advertiser_id"] is None:  # unknown ad: nothing to target on
        return False
    country, age = user["country"], user["age"]
    target = ad["target_country"]
    if target is not None and target != "ANY" and target != country:
        return True
    if age is None:
        return False
    return (ad["min_age"] is not None and ad["min_age"] > age) or (ad["max_age"] is not None and ad["max_age"] < age)


@bentoml.service(**service_options(SPEC))
class AdClick(CaseService):
    handler_type = Ranker
    rank = handler_api("/rank", RankRequest, RankResponse,
                       "Top k candidate ads for a user by calibrated click probability.")
