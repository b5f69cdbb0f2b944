"""Event recommendation service: rule filter -> ranking on online and request-time features, over HTTP.

``POST /recommend`` returns the top k upcoming events for a user with P(register) and the distance. The
rule filter keeps events within ``radius_km`` of where the user is (the request's ``lat``/``lon``, else
their home), starting in the next ``days``, not full and not registered by them; the ranker scores them
on the FeatureService's online features and on the request-time features its on-demand view computes
(the transformation Feast registered, the one training ran). A user without profile or history is
ranked on location and the events' popularity; one without any location gets the popular events
everywhere (``distance_km`` null). ``GET /readyz`` answers with the model tag once loaded.

Run by hand from the repository root::

    BENTOML_HOME=$CASEBOOK_HOME/models/bentoml \\
        bentoml serve services.event_recommendation.service:EventRecommendation --host 127.0.0.1 --port 3000
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Self

import bentoml
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.core.api import EntityId, RequestTime
from pipelines.core.service_base import CaseService, ChampionHandler, handler_api, service_options, serving_params
from pipelines.core.settings import Paths
from pipelines.event_recommendation.case import CASE as SPEC
from pipelines.event_recommendation.features import FEATURES, SLOT_COLUMNS
from pipelines.event_recommendation.model import ON_DEMAND_VIEW, Catalog, open_seats

SERVING = serving_params(SPEC)
PROFILE_INPUTS = ("price", "capacity", "venue_lat", "venue_lon", "start_s", "start_slot")


class RecommendRequest(BaseModel):
    """One request; strict JSON types, so ``"5"`` is not a user id and typos are errors."""

    model_config = ConfigDict(strict=True, extra="forbid")

    user_id: EntityId = Field(description="The user; an unknown id is a cold-start user.")
    k: int = Field(default=SERVING.default_k, ge=1, le=SERVING.max_k, description="Events to return.")
    lat: float | None = Field(default=None, ge=-90, le=90, description="Where the user is now (with lon).")
    lon: float | None = Field(default=None, ge=-180, le=180, description="Where the user is now (with lat).")
    at: RequestTime | None = Field(default=None, description="Request time (ISO 8601 with zone, 1970 to 2200); "
                                                             "default: the end of the model's data.")
    radius_km: float = Field(default=SERVING.radius_km, ge=0.1, le=SERVING.max_radius_km,
                             description="Only events this close to the user.")
    days: float = Field(default=SERVING.days, ge=0.01, le=SERVING.max_days,
                        description="Only events starting within this many days.")

    @model_validator(mode="after")
    def _both_coordinates(self) -> Self:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither (then the user's home is used)")
        return self


class RecommendedEvent(BaseModel):
    event_id: int
    rank: int
    score: float = Field(description="The ranker's P(register).")
    distance_km: float | None = Field(description="From where the user is; null without a location.")
    starts_at: datetime
    category: str


class RecommendResponse(BaseModel):
    model_tag: str
    user_known: bool = Field(description="False: no profile or history; ranked on location and popularity.")
    location: str = Field(description="request, home or none")
    candidates: int = Field(description="Events that passed the rule filter.")
    events: list[RecommendedEvent]


class Recommender(ChampionHandler):
    """The request path without HTTP: rule filter, online and on-demand features, the ranker."""

    case = SPEC
    cached_views = ("event_profile", "host_engagement")
    _catalog: tuple[float, Catalog] | None = None

    def catalog(self) -> Catalog:
        """The events index from the event profile table, reloaded when older than the item cache TTL."""
        now = time.monotonic()
        if self._catalog is None or now - self._catalog[0] > SERVING.item_cache_ttl_s:
            table = pd.read_parquet(Paths.from_env().features(SPEC.name) / "event_profile.parquet")
            self._catalog = (now, Catalog.of(table))
        return self._catalog[1]

    def recommend(self, user_id: int, k: int, lat: float | None = None, lon: float | None = None,
                  at: datetime | None = None, radius_km: float = SERVING.radius_km, days: float = SERVING.days
                  ) -> RecommendResponse:
        user = self.reader.entity_rows(("user_id",), [(user_id,)])[0]
        user_known = user["age"] is not None or user["user_impressions"] is not None
        location = "request" if lat is not None else "home" if user["home_lat"] is not None else "none"
        if location == "home":
            lat, lon = user["home_lat"], user["home_lon"]
        now = pd.Timestamp(at if at is not None else self.model.as_of).timestamp()
        cat = self.catalog()
        idx, dist = cat.upcoming(lat, lon, now, radius_km, days)
        if len(idx) > SERVING.max_candidates:  # the nearest (or soonest, without a location) are kept
            keep = np.argsort(dist if lat is not None else cat.start_s[idx], kind="stable")[:SERVING.max_candidates]
            idx, dist = idx[keep], dist[keep]
        n = len(idx)
        rows = self.reader.read({"user_id": [user_id] * n, "event_id": cat.event_id[idx].tolist(),
                                 "host_id": cat.host_id[idx].tolist(), "category": cat.category[idx].tolist()})
        ok = open_seats(cat.capacity[idx], rows["event_registrations"], rows["registered_before"])
        frame = pd.DataFrame({c: rows[c] for c in (*PROFILE_INPUTS, "user_mean_log_price", *SLOT_COLUMNS)})
        frame = frame.assign(user_lat=np.nan if lat is None else lat, user_lon=np.nan if lon is None else lon,
                             request_s=now).astype(float)
        computed = self.reader.on_demand(ON_DEMAND_VIEW, frame)
        columns = {c: computed[c].to_numpy() if c in computed else rows[c] for c in FEATURES}
        score = np.where(ok, self.model.ranker.predict(columns), -np.inf)
        top = [i for i in np.argsort(-score, kind="stable")[:k] if ok[i]]
        events = [RecommendedEvent(event_id=int(cat.event_id[idx[i]]), rank=r + 1, score=float(score[i]),
                                   distance_km=None if lat is None else float(dist[i]),
                                   starts_at=datetime.fromtimestamp(cat.start_s[idx[i]], tz=UTC),
                                   category=str(cat.category[idx[i]])) for r, i in enumerate(top)]
        return RecommendResponse(model_tag=self.tag, user_known=user_known, location=location,
                                 candidates=int(ok.sum()), events=events)

    def warm_up(self) -> None:
        self.recommend(2**62, 1)  # a cold-start user without location: loads the catalog and SQLite pages


@bentoml.service(**service_options(SPEC))
class EventRecommendation(CaseService):
    handler_type = Recommender
    recommend = handler_api("/recommend", RecommendRequest, RecommendResponse,
                            "Top k upcoming events for a user, with P(register) and the distance.")
