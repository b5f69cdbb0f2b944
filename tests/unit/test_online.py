"""Online reads for services: the per-view reader and its TTL cache, and the pandas-free request encoder.

The reader runs on real Feast definitions over an in-memory online store with Feast's own key
serialization and value protos, so it is checked against the FeatureService read semantics without I/O.
The e2e service test checks the whole path against a real store and offline features.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines.ad_click.model import (
    CATEGORICAL,
    CROSSES,
    DEEP_CROSSES,
    ClickModel,
    build_deepfm,
    encode,
    encode_columns,
)
from pipelines.core.online import OnlineReader, TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ttl_cache_expires_and_stays_bounded() -> None:
    clock = Clock()
    cache = TTLCache(ttl_s=10, max_entries=2, clock=clock)
    assert cache.get("a") == (False, None)
    cache.put("a", None)  # a cached miss is a hit
    assert cache.get("a") == (True, None)
    clock.now = 9.9
    assert cache.get("a") == (True, None)
    clock.now = 10.0
    assert cache.get("a") == (False, None)
    cache.put("b", 1)
    cache.put("c", 2)
    cache.put("d", 3)  # oldest stored entries go first
    assert len(cache) == 2 and cache.get("b") == (False, None) and cache.get("d") == (True, 3)
    with pytest.raises(ValueError, match="ttl_s must be > 0"):
        TTLCache(ttl_s=0, max_entries=1)


class FakeStore:
    """A FeatureStore stand-in: real Feast definitions, rows held in memory by serialized entity key."""

    def __init__(self, objects: list[Any], rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]]) -> None:
        from feast import FeatureService, FeatureView
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.type_map import python_values_to_proto_values

        self.services = {o.name: o for o in objects if isinstance(o, FeatureService)}
        self.views = {o.name: o for o in objects if isinstance(o, FeatureView)}
        self.config = object()
        self.provider = self
        self.calls: list[tuple[str, int]] = []
        self.data: dict[str, dict[bytes, dict[str, Any]]] = {}
        for name, by_key in rows.items():
            view = self.views[name]
            types = {c.name: c.dtype.to_value_type() for c in [*view.entity_columns, *view.features]}
            table = self.data.setdefault(name, {})
            for key, values in by_key.items():
                protos = [python_values_to_proto_values([v], types[k])[0]
                          for k, v in zip(view.join_keys, key, strict=True)]
                blob = serialize_entity_key(EntityKey(join_keys=view.join_keys, entity_values=protos), 3)
                table[blob] = {f: python_values_to_proto_values([v], types[f])[0] for f, v in values.items()}

    def get_feature_service(self, name: str) -> Any:
        return self.services[name]

    def get_feature_view(self, name: str) -> Any:
        return self.views[name]

    def list_feature_views(self) -> list[Any]:
        return list(self.views.values())

    def online_read(self, config: Any, table: Any, entity_keys: list[Any],
                    requested_features: list[str]) -> list[tuple[Any, Any]]:
        from feast.infra.key_encoding_utils import serialize_entity_key

        self.calls.append((table.name, len(entity_keys)))
        stored = self.data.get(table.name, {})
        found = [stored.get(serialize_entity_key(k, 3)) for k in entity_keys]
        return [(None, None) if row is None else (None, {f: row[f] for f in requested_features if f in row})
                for row in found]


@pytest.fixture
def store() -> FakeStore:
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float32, Int64, String

    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64)

    def view(name: str, entities: list[Any], schema: list[Any]) -> Any:
        keys = [Field(name=e.join_key, dtype=Int64) for e in entities]  # `feast apply` infers these
        return FeatureView(name=name, entities=entities, ttl=timedelta(0), schema=keys + schema,
                           source=FileSource(name=f"{name}_src", path=f"{name}.parquet",
                                             timestamp_field="event_timestamp"))

    views = [
        view("profile", [user], [Field(name="age", dtype=Int64), Field(name="country", dtype=String)]),
        view("item", [item], [Field(name="category", dtype=String), Field(name="price", dtype=Float32)]),
        view("pair", [user, item], [Field(name="seen", dtype=Int64)]),
    ]
    service = FeatureService(name="svc", features=views)
    rows = {
        "profile": {(1,): {"age": 30, "country": "DE"}, (2,): {"age": 50, "country": "US"}},
        "item": {(10,): {"category": "shoes", "price": 2.5}, (11,): {"category": "books", "price": 8.0}},
        "pair": {(1, 10): {"seen": 3}},
    }
    return FakeStore([user, item, *views, service], rows)


def test_read_matches_the_feature_service_row_by_row(store: FakeStore) -> None:
    reader = OnlineReader(store, "svc")
    got = reader.read({"user_id": [1, 1, 1, 3], "item_id": [10, 11, 99, 10]})
    assert got == {
        "user_id": [1, 1, 1, 3], "item_id": [10, 11, 99, 10],
        "age": [30, 30, 30, None], "country": ["DE", "DE", "DE", None],
        "category": ["shoes", "books", None, "shoes"], "price": [2.5, 8.0, None, 2.5],
        "seen": [3, None, None, None],
    }
    # one store call per view, each with distinct keys only: 2 users, 3 items, 4 pairs
    assert sorted(store.calls) == [("item", 3), ("pair", 4), ("profile", 2)]
    assert reader.read({"user_id": [], "item_id": []})["seen"] == []


def test_entity_rows_merge_the_views_of_one_entity(store: FakeStore) -> None:
    reader = OnlineReader(store, "svc")
    assert reader.join_keys == ["item_id", "user_id"]
    assert reader.entity_rows(("user_id",), [(2,), (7,)]) == [{"age": 50, "country": "US"},
                                                            {"age": None, "country": None}]
    # key order follows the caller's join keys, not the view's
    assert reader.entity_rows(("item_id", "user_id"), [(10, 1), (11, 1)]) == [{"seen": 3}, {"seen": None}]
    with pytest.raises(ValueError, match=r"no view of feature service 'svc' is keyed by \['country'\]"):
        reader.entity_rows(("country",), [("DE",)])


def test_cached_views_read_only_misses_until_the_ttl_passes(store: FakeStore) -> None:
    clock = Clock()
    reader = OnlineReader(store, "svc", cached_views=["item"], ttl_s=60, clock=clock)
    keys = [(10,), (99,)]
    first = reader.entity_rows(("item_id",), keys)
    assert reader.entity_rows(("item_id",), [*keys, (11,)])[:2] == first
    assert store.calls == [("item", 2), ("item", 1)]  # the unknown item 99 is a cached miss too
    clock.now = 61
    reader.entity_rows(("item_id",), keys)
    assert store.calls[-1] == ("item", 2)
    reader.entity_rows(("user_id", "item_id"), [(1, 10)])
    reader.entity_rows(("user_id", "item_id"), [(1, 10)])
    assert store.calls[-2:] == [("pair", 1), ("pair", 1)]  # uncached views are read every time


def test_reader_rejects_bad_configuration_and_rows(store: FakeStore) -> None:
    with pytest.raises(ValueError, match=r"cached views \['items'\] are not in feature service 'svc'"):
        OnlineReader(store, "svc", cached_views=["items"])
    reader = OnlineReader(store, "svc")
    with pytest.raises(ValueError, match=r"lack join keys \['item_id'\]"):
        reader.read({"user_id": [1]})
    with pytest.raises(ValueError, match="one length"):
        reader.read({"user_id": [1], "item_id": [1, 2]})


def _request_frame(rng: np.random.Generator, n: int, user: dict[str, Any]) -> pd.DataFrame:
    """A serving frame as the old pandas path built it: one user, n candidates, some ads unknown."""
    known = rng.random(n) > 0.2
    seen = rng.random(n) > 0.7

    def some(values: np.ndarray, mask: np.ndarray) -> list[Any]:
        return [(v.item() if hasattr(v, "item") else v) if m else None for v, m in zip(values, mask, strict=True)]

    frame = pd.DataFrame({
        "ad_id": rng.integers(1, 10**6, n),
        "advertiser_id": pd.array(some(rng.integers(1, 50, n), known), dtype="Int64"),
        "campaign_id": pd.array(some(rng.integers(1, 500, n), known), dtype="Int64"),
        "category": some(rng.choice(["auto", "food", "games"], n), known),
        "target_country": some(rng.choice(["ANY", "US", "DE"], n), known),
        "ad_impressions": pd.array(some(rng.integers(0, 10**4, n), known), dtype="Int64"),
        "ad_ctr": some(rng.random(n).astype(np.float32).astype(float) / 10, known),
        "user_ad_impressions": pd.array(some(rng.integers(1, 5, n), seen), dtype="Int64"),
        "user_ad_ctr": some(rng.random(n) / 10, seen),
    })
    for name, value in user.items():
        frame[name] = pd.array([value] * n, dtype="Int64") if name in ("age", "user_impressions") else value
    return frame.assign(position=1, device="tablet", hour=7)


USERS = {
    "known": {"age": 37, "gender": "f", "country": "DE", "language": "de", "user_impressions": 12,
              "user_ctr": 0.041},
    "cold": {"age": None, "gender": None, "country": None, "language": None, "user_impressions": None,
             "user_ctr": None},
}


@pytest.mark.parametrize("crosses", [CROSSES, DEEP_CROSSES], ids=["baseline", "deepfm"])
@pytest.mark.parametrize("who", list(USERS))
def test_request_encoding_equals_the_training_encoding(who: str, crosses: tuple[tuple[str, ...], ...]) -> None:
    """No skew: the serving encoder gives the ids and numbers ``encode`` gives training, bit for bit."""
    rng = np.random.default_rng(5)
    user = USERS[who]
    frame = _request_frame(rng, 60, user)
    request_fields = {"position", "device", "hour"}
    columns = {c: (frame[c].iloc[0] if c in request_fields else user[c] if c in user
                   else [None if pd.isna(v) else v for v in frame[c]])
               for c in frame.columns}
    ids, num = encode(frame, prior=0.03, crosses=crosses)
    fast_ids, fast_num = encode_columns(columns, len(frame), prior=0.03, crosses=crosses)
    assert ids.shape == (60, len(CATEGORICAL) + len(crosses))
    np.testing.assert_array_equal(fast_ids, ids)
    np.testing.assert_array_equal(fast_num, num)

    model = ClickModel("deepfm", 0.03, build_deepfm(ids.shape[1], num.shape[1], 4, [8], 0.0), crosses=crosses)
    model.predictor.eval()
    np.testing.assert_array_equal(model.predict_columns(columns, len(frame)), model.predict(frame))


@pytest.mark.integration
def test_direct_sqlite_reads_equal_feast_reads(tmp_path: Any) -> None:
    """On a real SQLite online store the direct reader returns what Feast's own reads return."""
    from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.types import Float32, Int64, String

    fs = FeatureStore(config=RepoConfig(
        project="t", provider="local", registry=str(tmp_path / "registry.db"),
        online_store=SqliteOnlineStoreConfig(path=str(tmp_path / "online.db")), offline_store={"type": "duckdb"},
        entity_key_serialization_version=3, repo_path=tmp_path))
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    shop = Entity(name="shop", join_keys=["shop"], value_type=ValueType.STRING)
    source = FileSource(name="src", path=str(tmp_path / "none.parquet"), timestamp_field="event_timestamp")
    profile = FeatureView(name="profile", entities=[user], ttl=timedelta(0), source=source,
                          schema=[Field(name="user_id", dtype=Int64), Field(name="age", dtype=Int64),
                                  Field(name="country", dtype=String)])
    visits = FeatureView(name="visits", entities=[user, shop], ttl=timedelta(0), source=source,
                         schema=[Field(name="user_id", dtype=Int64), Field(name="shop", dtype=String),
                                 Field(name="visits", dtype=Int64), Field(name="spend", dtype=Float32)])
    fs.apply([user, shop, profile, visits, FeatureService(name="svc", features=[profile, visits])])
    now = pd.Timestamp("2026-01-01", tz="UTC")
    fs.write_to_online_store("profile", pd.DataFrame({
        "user_id": [1, 2, -(2**40)], "age": [30, 51, 7], "country": ["DE", "FR", "ÉÈ"], "event_timestamp": now}))
    fs.write_to_online_store("visits", pd.DataFrame({
        "user_id": [1, 1, 2], "shop": ["a", "bäckerei", "a"], "visits": [3, 1, 9], "spend": [2.5, 0.1, 7.0],
        "event_timestamp": now}))

    rows = {"user_id": [1, 1, 1, 2, 3, -(2**40)], "shop": ["a", "bäckerei", "z", "a", "a", "a"]}
    expected = fs.get_online_features(features=fs.get_feature_service("svc"),
                                      entity_rows=[dict(zip(rows, r, strict=True)) for r in zip(*rows.values(),
                                                                                                strict=True)]
                                      ).to_dict()
    direct = OnlineReader(fs, "svc")
    assert sorted(direct.direct) == ["profile", "visits"]  # both views take the direct path
    provider = OnlineReader(fs, "svc", direct=False)
    assert not provider.direct
    assert direct.read(rows) == provider.read(rows) == expected
    assert expected["spend"][1] == pytest.approx(0.1) and expected["visits"][2] is None
