"""The served model and the request path's pure parts: the rule filter and the ranker's input columns.

The service (``services/event_recommendation``) filters the upcoming events by rules, reads the batch
features online, computes the request-time ones with the on-demand view Feast registered, and scores
with the ranker; each piece here is testable without a server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.world.social import haversine_km

ON_DEMAND_VIEW = "event_request_features"


@dataclass
class EventRanker:
    """The pointwise LightGBM ranker (P(register)) and the end of the data it was trained on."""

    ranker: Any  # pipelines.core.recsys.ranker.Ranker, binary objective
    as_of: pd.Timestamp
    """The service's clock when a request does not say: the end of the model's data."""


@dataclass(frozen=True)
class Catalog:
    """Every event's static attributes as arrays (the service's geo/time index of events)."""

    event_id: np.ndarray
    host_id: np.ndarray
    category: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    start_s: np.ndarray
    created_s: np.ndarray
    capacity: np.ndarray

    @classmethod
    def of(cls, events: pd.DataFrame) -> Catalog:
        """From the ``event_profile`` feature table (its ``event_timestamp`` is the creation time)."""
        from pipelines.core.features import unix_seconds

        return cls(event_id=events["event_id"].to_numpy(np.int64), host_id=events["host_id"].to_numpy(np.int64),
                   category=events["category"].to_numpy(object), lat=events["venue_lat"].to_numpy(float),
                   lon=events["venue_lon"].to_numpy(float), start_s=unix_seconds(events["start_ts"]),
                   created_s=unix_seconds(events["event_timestamp"]), capacity=events["capacity"].to_numpy(np.int64))

    def upcoming(self, lat: float | None, lon: float | None, now_s: float, radius_km: float, days: float
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Indices of events created by now that start within ``days`` and (with a location) ``radius_km``,
        and their distances (NaN without a location)."""
        ok = (self.created_s <= now_s) & (self.start_s > now_s) & (self.start_s <= now_s + days * 86_400)
        idx = np.flatnonzero(ok)
        if lat is None or lon is None:
            return idx, np.full(len(idx), np.nan)
        dist = haversine_km(lat, lon, self.lat[idx], self.lon[idx])
        near = dist <= radius_km
        return idx[near], dist[near]


def open_seats(capacity: np.ndarray, registrations: list[Any], registered_before: list[Any]) -> np.ndarray:
    """The rule filter's last two rules: not full, and not registered by this user already."""
    regs = np.array([0 if r is None else r for r in registrations], dtype=np.int64)
    mine = np.array([0 if r is None else r for r in registered_before], dtype=np.int64)
    return (regs < capacity) & (mine == 0)


def request_features(fs: Any, inputs: pd.DataFrame) -> pd.DataFrame:
    """The on-demand view's features from its inputs, by the transformation registered in Feast."""
    return fs.get_on_demand_feature_view(ON_DEMAND_VIEW).feature_transformation.transform(inputs)
