"""Feast plumbing shared by every case: one store, partial applies per case, PIT reads, online reads.

The config is built in code from ``Paths`` (same shape as ``feature_repo/feature_store.yaml``) so
``CASEBOOK_HOME`` relocates registry, online store and feature tables together.
"""

from __future__ import annotations

import importlib
import sys
from datetime import datetime
from typing import Any

import pandas as pd

from pipelines.core.settings import PROJECT_ROOT, Paths

FEATURE_REPO = PROJECT_ROOT / "feature_repo"
SHARED_MODULE = "user_features"


def store(paths: Paths | None = None) -> Any:
    """A FeatureStore on the local SQLite registry and online store under ``paths.feast``."""
    from feast import FeatureStore, RepoConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.infra.registry.sql import SqlRegistryConfig

    paths = paths or Paths.from_env()
    paths.feast.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(
        project="casebook",
        provider="local",
        # A SQL registry, not the default protobuf file: materialization (in a background process) writes
        # the registry while training reads it, and a file registry is rewritten in place, so a reader
        # could see half a file. SQLite serialises them.
        registry=SqlRegistryConfig(registry_type="sql", path=f"sqlite:///{paths.feast / 'registry.sqlite'}",
                                cache_ttl_seconds=60),
        online_store=SqliteOnlineStoreConfig(path=str(paths.feast / "online.db")),
        offline_store={"type": "duckdb"},
        entity_key_serialization_version=3,
        repo_path=FEATURE_REPO,
    )
    return FeatureStore(config=config)


def definitions(case: str) -> list[Any]:
    """The Feast objects of the shared module and ``feature_repo/<case>_features.py``, on-demand views too."""
    from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView

    if str(FEATURE_REPO) not in sys.path:
        sys.path.insert(0, str(FEATURE_REPO))
    objects: dict[int, Any] = {}  # by identity: a case module re-exports the shared objects it imports
    for name in (SHARED_MODULE, f"{case}_features"):
        module = importlib.reload(importlib.import_module(name))  # reload: CASEBOOK_HOME may have changed
        kinds = Entity | FeatureView | OnDemandFeatureView | FeatureService
        objects |= {id(o): o for o in vars(module).values() if isinstance(o, kinds)}
    return list(objects.values())


def apply(case: str, fs: Any) -> list[str]:
    """``feast apply`` for one case, partial: other cases' views stay registered."""
    objects = definitions(case)
    fs.apply(objects)
    return sorted(o.name for o in objects)


def service_views(fs: Any, service: str) -> list[str]:
    """The stored feature views a FeatureService reads: what the online store must hold (no second list).

    On-demand views are left out: they are computed from request data and stored views at read time.
    """
    stored = {v.name for v in fs.list_feature_views()}
    return [p.name for p in fs.get_feature_service(service).feature_view_projections if p.name in stored]


def materialize(fs: Any, service: str, start: datetime, end: datetime, columnar: bool = True) -> list[str]:
    """Load the latest value per entity in ``[start, end)`` of the service's views into the online store.

    The window comes from the data (any era of timestamps works: a log from the 1990s or the future).
    The SQLite store is loaded by ``pipelines.core.materialize`` (columnar, Feast's serializers);
    ``columnar=False``, or any other online store, takes Feast's own ``materialize``.
    """
    from pipelines.core import materialize as fast

    views = service_views(fs, service)
    if columnar and fast.columnar_ok(fs):
        start, end = _utc(start), _utc(end)
        for name in views:
            fast.write_view(fs, name, start, end)
    else:
        fs.materialize(start_date=start, end_date=end, feature_views=views)
    return views


def _utc(t: datetime) -> datetime:
    from datetime import UTC

    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


ROW = "__casebook_row"


def historical(fs: Any, entity_df: pd.DataFrame, service: str) -> pd.DataFrame:
    """Point-in-time-correct features for each entity row as of its ``event_timestamp``, in its order.

    The offline store returns rows in whatever order its parallel join produced; training batches are
    drawn by row position, so the entity frame's order is restored to keep runs reproducible.
    """
    rows = entity_df.assign(**{ROW: range(len(entity_df))})
    out = fs.get_historical_features(entity_df=rows, features=fs.get_feature_service(service)).to_df()
    return out.sort_values(ROW, kind="stable").drop(columns=ROW).reset_index(drop=True)
