"""The columnar online-store load equals Feast's own materialize, byte for byte, for every view of every case."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
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
