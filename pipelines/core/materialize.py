"""Load the SQLite online store at columnar speed, with Feast's own serializers and table layout.

Feast's materialization writes the SQLite store one ``execute`` per feature value and builds one proto
object per value through a general type dispatch: ~90 µs a value (a profile of ad_click's 408k values:
16.6 s, half in the write loop). Here each view is read the way Feast reads it (the offline store's
latest row per entity in the window), the entity keys are serialized from Feast's key prefix and the
key values' fixed layout, each value is serialized by Feast's ``Value`` proto, and the rows go to the
table Feast created in one transaction of multi-row upserts, the statement Feast's store uses. The result is read
by Feast's own ``get_online_features`` exactly as the slow path's (a test compares every view), and the
registry records the materialized interval as Feast does. Any other online store (Redis, Postgres)
takes Feast's normal path.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
import struct
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np


def _key_part(dtype: Any, value: Any) -> bytes:
    """One join key value as ``serialize_entity_key`` lays it out: type, length, bytes."""
    from feast.value_type import ValueType

    if dtype == ValueType.STRING:
        raw = str(value).encode("utf8")
        return struct.pack("<II", ValueType.STRING.value, len(raw)) + raw
    return struct.pack("<IIq", ValueType.INT64.value, 8, int(value))


def _entity_keys(table: Any, keys: list[tuple[str, Any]]) -> list[bytes]:
    """Serialized entity keys of every row (keys sorted by name, as Feast sorts them)."""
    from feast.infra.key_encoding_utils import serialize_entity_key_prefix
    from feast.value_type import ValueType

    keys = sorted(keys)
    prefix = serialize_entity_key_prefix([k for k, _ in keys], entity_key_serialization_version=3)
    if all(dtype == ValueType.INT64 for _, dtype in keys):  # the common case, fully vectorized
        packed = np.empty(table.num_rows, dtype=[f for i in range(len(keys))
                                                 for f in ((f"t{i}", "<u4"), (f"n{i}", "<u4"), (f"v{i}", "<i8"))])
        for i, (k, _) in enumerate(keys):
            packed[f"t{i}"], packed[f"n{i}"] = ValueType.INT64.value, 8
            packed[f"v{i}"] = np.asarray(table.column(k).to_numpy(), dtype="<i8")
        blob, width = packed.tobytes(), packed.dtype.itemsize
        return [prefix + blob[i:i + width] for i in range(0, len(blob), width)]
    columns = [(table.column(k).to_pylist(), dtype) for k, dtype in keys]
    return [prefix + b"".join(_key_part(dtype, col[i]) for col, dtype in columns) for i in range(table.num_rows)]


def _values(column: Any, kind: str) -> tuple[list[bytes], list[str | None]]:
    """Serialized ``Value`` protos and their text, as Feast's store writes them (null and NaN: empty).

    One proto per distinct value, not per row: counts, flags, categories and ratios of small counts
    repeat, so most columns have far fewer distinct values than rows.
    """
    import pyarrow.compute as pc
    from feast.protos.feast.types.Value_pb2 import Value

    encoded = pc.dictionary_encode(column.combine_chunks())  # one dictionary for the whole column
    distinct = encoded.dictionary.to_pylist()
    blobs: list[bytes] = []
    texts: list[str | None] = []
    for v in [*distinct, None]:  # the last one: what a null row points at
        if v is None or (isinstance(v, float) and math.isnan(v)):
            blobs.append(Value().SerializeToString())
            texts.append(None)
            continue
        proto = Value(**{kind: v})
        blobs.append(proto.SerializeToString())
        texts.append(getattr(proto, kind) if kind == "string_val" else str(getattr(proto, kind)))
    codes = encoded.indices.fill_null(len(distinct)).to_numpy().tolist()
    return [blobs[c] for c in codes], [texts[c] for c in codes]


PROTO_FIELD = {"INT64": "int64_val", "INT32": "int32_val", "FLOAT": "float_val", "DOUBLE": "double_val",
               "STRING": "string_val", "BOOL": "bool_val"}


def _naive_utc(column: Any) -> list[int | None]:
    """Timestamps as the SQLite store keeps them: Feast's own ``sqlite3`` adapter applied to naive UTC.

    Adapted once per distinct time here, where ``sqlite3`` would adapt them once per value (a view's
    rows share a handful of snapshot times); the offline store may hand back strings.
    """
    import pandas as pd
    from feast.infra.online_stores.sqlite import adapt_datetime_epoch

    stamps = pd.to_datetime(pd.Series(column.to_numpy(zero_copy_only=False)), utc=True).dt.tz_convert(None)
    codes, distinct = pd.factorize(stamps)  # a missing time gets code -1: the None appended last
    adapted = [*map(adapt_datetime_epoch, pd.DatetimeIndex(distinct).to_pydatetime()), None]  # no Timestamp objects
    return [adapted[c] for c in codes.tolist()]


ROWS_PER_STATEMENT = 500 if sqlite3.sqlite_version_info >= (3, 32) else 160
"""Rows per multi-row INSERT: six bound values a row, under SQLite's variable limit (32,766 since 3.32,
999 before). One statement per row spends a third of the load re-running the statement machinery."""


def _upsert(conn: Any, table: str, rows: Iterator[tuple[Any, ...]]) -> None:
    """Feast's upsert of ``rows`` (entity_key, feature_name, value, value_text, event_ts, created_ts),
    ``ROWS_PER_STATEMENT`` rows a statement."""
    def statement(n: int) -> str:
        return (f"INSERT INTO {table} (entity_key, feature_name, value, value_text, event_ts, created_ts) VALUES "
                + ",".join(["(?, ?, ?, ?, ?, ?)"] * n) + " ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
                "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
                "created_ts = excluded.created_ts;")

    full = statement(ROWS_PER_STATEMENT)
    while batch := list(itertools.islice(rows, ROWS_PER_STATEMENT)):
        conn.execute(full if len(batch) == ROWS_PER_STATEMENT else statement(len(batch)),
                     tuple(itertools.chain.from_iterable(batch)))


def write_view(fs: Any, name: str, start: datetime, end: datetime) -> int:
    """Materialize one feature view into the SQLite online store; returns the rows written."""
    from feast.infra.online_stores.sqlite import _quote_id, _table_id

    fv = fs.get_feature_view(name)
    source = fv.batch_source
    keys = [(c.name, c.dtype.to_value_type()) for c in fv.entity_columns]
    features = [(f.name, PROTO_FIELD[f.dtype.to_value_type().name]) for f in fv.features]
    offline = fs._get_provider().offline_store
    job = offline.pull_latest_from_table_or_query(
        config=fs.config, data_source=source, join_key_columns=[k for k, _ in keys],
        feature_name_columns=[f for f, _ in features], timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column or None, start_date=start, end_date=end)
    table = job.to_arrow()
    if source.field_mapping:
        table = table.rename_columns([source.field_mapping.get(c, c) for c in table.column_names])
    n = table.num_rows
    if n:
        entity = _entity_keys(table, keys)
        order = sorted(range(n), key=entity.__getitem__)  # primary-key order: the B-tree is appended to
        table = table.take(order)
        entity = [entity[i] for i in order]
        stamps = _naive_utc(table.column(source.timestamp_field))
        created = (_naive_utc(table.column(source.created_timestamp_column))
                   if source.created_timestamp_column else [None] * n)
        per_feature = [zip(entity, [feature] * n, *_values(table.column(feature), kind), stamps, created, strict=True)
                       for feature, kind in sorted(features)]
        conn = fs._get_provider().online_store._get_conn(fs.config)
        table_name = _quote_id(_table_id(fs.project, fv, fs.config.registry.enable_online_feature_view_versioning))
        with conn:  # entity by entity, features by name: (entity_key, feature_name) order, one transaction
            _upsert(conn, table_name, itertools.chain.from_iterable(zip(*per_feature, strict=True)))
    fs.registry.apply_materialization(fv, fs.project, start, end)
    return n


def columnar_ok(fs: Any) -> bool:
    """The fast path writes Feast's SQLite layout; vector and value_num columns stay with Feast's path."""
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

    store = fs.config.online_store
    return (isinstance(store, SqliteOnlineStoreConfig) and not store.vector_enabled
            and not getattr(store, "enable_openai_compatible_store", False))
