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


def materialize(fs: Any, service: str, start: datetime, end: datetime, columnar: bool = True,
                incremental: bool = False) -> dict[str, dict[str, Any]]:
    """Load the latest value per entity in ``[start, end)`` of the service's views into the online store.

    The window comes from the data (any era of timestamps works: a log from the 1990s or the future).
    The SQLite store is loaded by ``pipelines.core.materialize`` (columnar, Feast's serializers);
    ``columnar=False``, or any other online store, takes Feast's own ``materialize``.
    ``incremental``: a view already loaded up to some time whose rows before it are unchanged (same
    digest) loads only what came after, as ``feast materialize-incremental`` does; a view whose history
    changed (new data for an old day, another feature definition) is loaded whole again.
    Returns, per view, where its load began and the rows written (None on Feast's path, which does not say).
    """
    from pipelines.core import materialize as fast

    start, end = _utc(start), _utc(end)
    done: dict[str, dict[str, Any]] = {}
    for name in service_views(fs, service):
        fv = fs.get_feature_view(name)
        since = max(start, _loaded_until(fs, fv) or start) if incremental else start
        since = min(since, end)
        if columnar and fast.columnar_ok(fs):
            rows: int | None = fast.write_view(fs, name, since, end) if since < end else 0
        else:
            if since < end:
                fs.materialize(start_date=since, end_date=end, feature_views=[name])
            rows = None if since < end else 0
        _record_load(fs, fv, end)
        done[name] = {"from": since.isoformat(), "rows": rows}
    return done


LOADS = "casebook_materialized"
"""The online store's own record of each view's load: kept in the store, so it goes when the store goes."""


def _history_digest(fv: Any, before: datetime) -> str | None:
    """A digest of the view's offline rows before ``before`` and of its schema; None if not a local file."""
    import glob
    import hashlib
    from pathlib import Path

    import numpy as np

    path = getattr(fv.batch_source, "path", None)
    files = sorted(glob.glob(path)) if path else []  # a path or a glob (the shared profile: one file a case)
    if not files or not all(Path(f).is_file() for f in files):
        return None
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    stamps = pd.to_datetime(frame[fv.batch_source.timestamp_field], utc=True)
    rows = pd.util.hash_pandas_object(frame[(stamps < pd.Timestamp(before)).to_numpy()], index=False).to_numpy()
    schema = ",".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items())
    schema += "|" + ",".join(f"{f.name}:{f.dtype}" for f in fv.features)
    # sorted: order-free, a rebuilt table may list the same rows in another order
    return hashlib.sha256(schema.encode() + np.sort(rows).tobytes()).hexdigest()


def _loads(fs: Any) -> Any:
    """The SQLite connection holding the load record (only the SQLite store keeps one)."""
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

    if not isinstance(fs.config.online_store, SqliteOnlineStoreConfig):
        return None
    conn = fs._get_provider().online_store._get_conn(fs.config)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {LOADS} (view TEXT PRIMARY KEY, until TEXT, digest TEXT)")
    return conn


def _loaded_until(fs: Any, fv: Any) -> datetime | None:
    """The end of the view's last load, if the rows before it are the ones loaded then."""
    conn = _loads(fs)
    row = conn.execute(f"SELECT until, digest FROM {LOADS} WHERE view = ?", (fv.name,)).fetchone() if conn else None
    if row is None:
        return None
    until = datetime.fromisoformat(row[0])
    digest = _history_digest(fv, until)
    return until if digest is not None and digest == row[1] else None


def _record_load(fs: Any, fv: Any, until: datetime) -> None:
    conn = _loads(fs)
    if conn is not None:
        with conn:
            conn.execute(f"INSERT OR REPLACE INTO {LOADS} VALUES (?, ?, ?)",
                         (fv.name, until.isoformat(), _history_digest(fv, until)))


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
