"""The columnar online-store load equals Feast's own materialize, byte for byte, for every view of every case."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipelines import cases
from pipelines.core import feast
from pipelines.core.settings import Paths

pytestmark = pytest.mark.integration
WITH_FEATURES = [name for name in cases.CASES if cases.spec(name).features is not None]


def _take(db: Any, views: list[str], project: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored row of each view's table, then empty the table."""
    out = {}
    with sqlite3.connect(db) as c:
        for v in views:
            table = f'"{project}_{v}"'
            out[v] = sorted(c.execute(f"SELECT entity_key, feature_name, value, value_text, event_ts, created_ts "
                                      f"FROM {table}").fetchall())
            c.execute(f"DELETE FROM {table}")
    return out


@pytest.mark.parametrize("case", WITH_FEATURES)
def test_the_columnar_load_writes_what_feast_writes(case: str, case_run: Callable[[str], dict[str, Any]]) -> None:
    window = case_run(case)["features"]["online"]
    start, end = (datetime.fromisoformat(window[k]).astimezone(UTC) for k in ("from", "until"))
    paths = Paths.from_env()
    fs = feast.store(paths)
    service = cases.spec(case).features.service
    views = feast.service_views(fs, service)
    db = paths.feast / "online.db"
    _take(db, views, fs.project)
    feast.materialize(fs, service, start, end, columnar=False)
    slow = _take(db, views, fs.project)
    feast.materialize(fs, service, start, end)  # the columnar path; it also leaves the store loaded
    with sqlite3.connect(db) as c:
        fast = {v: sorted(c.execute(f'SELECT entity_key, feature_name, value, value_text, event_ts, created_ts '
                                    f'FROM "{fs.project}_{v}"').fetchall()) for v in views}
    assert all(slow[v] for v in views)
    assert fast == slow
    # and Feast's own reader sees it: one entity of the first view, through get_online_features
    view = fs.get_feature_view(views[0])
    row = fs.get_online_features(features=[f"{view.name}:{view.features[0].name}"],
                                 entity_rows=[_entity(fs, view, slow[view.name][0][0])]).to_dict()
    assert row[view.features[0].name][0] is not None


def _entity(fs: Any, view: Any, key: bytes) -> dict[str, Any]:
    from feast.infra.key_encoding_utils import deserialize_entity_key
    from feast.type_map import feast_value_type_to_python_type

    proto = deserialize_entity_key(key, entity_key_serialization_version=3)
    return {k: feast_value_type_to_python_type(v) for k, v in zip(proto.join_keys, proto.entity_values, strict=True)}


def _online(db: Path, view: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as c:
        return sorted(c.execute(f'SELECT entity_key, feature_name, value, event_ts FROM "casebook_{view}"').fetchall())


def test_a_new_window_loads_only_what_is_new_and_a_changed_history_loads_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``incremental``: the rerun loads nothing, a new day loads that day, an edited old day loads everything."""
    import pandas as pd

    from pipelines.ad_click.features import SERVICE, ad_profile_table, ctr_tables
    from pipelines.core.features import write_user_profile
    from pipelines.core.io import write_parquet
    from pipelines.world.ad_click import AdClickWorld
    from pipelines.world.population import EPOCH, SCALES

    monkeypatch.setenv("CASEBOOK_HOME", str(tmp_path))
    paths = Paths.from_env()
    world = AdClickWorld(seed=3, scale=SCALES["tiny"]).window(0, 6)
    write_user_profile(world["users"], paths, "ad_click")
    write_parquet(ad_profile_table(world["ads"]), paths.features("ad_click") / "ad_profile.parquet")
    for name, table in ctr_tables(world["impressions"], prior=0.03).items():
        write_parquet(table, paths.features("ad_click") / f"{name}.parquet")
    fs = feast.store(paths)
    feast.apply("ad_click", fs)
    start, end = world["users"]["signup_ts"].min().floor("D").to_pydatetime(), (EPOCH + pd.Timedelta(days=7))
    first = feast.materialize(fs, SERVICE, start, end.to_pydatetime(), incremental=True)
    assert all(v["rows"] > 0 for v in first.values())

    again = feast.materialize(fs, SERVICE, start, end.to_pydatetime(), incremental=True)
    assert {v["rows"] for v in again.values()} == {0}  # a rerun of the same window loads nothing

    ctr_file = paths.features("ad_click") / "ad_ctr.parquet"
    old = pd.read_parquet(ctr_file)
    newer = old.drop_duplicates("ad_id", keep="last").head(5).assign(
        event_timestamp=end + pd.Timedelta(hours=3), ad_impressions=10**6)
    both = write_parquet(pd.concat([old, newer], ignore_index=True), ctr_file)
    later = (end + pd.Timedelta(days=1)).to_pydatetime()
    stamps = pd.read_parquet(both)
    fresh = stamps[(stamps["event_timestamp"] >= end) & (stamps["event_timestamp"] < later)]["ad_id"].nunique()
    step = feast.materialize(fs, SERVICE, start, later, incremental=True)
    assert step["ad_ctr"] == {"from": end.isoformat(), "rows": fresh} and fresh >= 5
    assert all(v["from"] == end.isoformat() for v in step.values())  # every view: only the new day
    db = paths.feast / "online.db"
    loaded = _online(db, "ad_ctr")
    feast.materialize(fs, SERVICE, start, later)  # the whole history again: the same store
    assert _online(db, "ad_ctr") == loaded
    got = fs.get_online_features(features=["ad_ctr:ad_impressions"],
                                 entity_rows=[{"ad_id": int(newer["ad_id"].iloc[0])}]).to_dict()
    assert got["ad_impressions"] == [10**6]

    edited = pd.read_parquet(ctr_file)
    edited.loc[0, "ad_impressions"] += 1  # an old day changed: the history no longer matches the load
    write_parquet(edited, ctr_file)
    whole = feast.materialize(fs, SERVICE, start, later, incremental=True)
    assert whole["ad_ctr"]["from"] == start.replace(tzinfo=UTC).isoformat() and whole["ad_ctr"]["rows"] > fresh
