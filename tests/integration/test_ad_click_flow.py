"""The ad_click flow set on real Prefect, GX, Feast, BentoML and Evidently with a tiny world."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines.ad_click.flows import CASE, ad_click_flow
from pipelines.core.settings import Paths
from pipelines.core.validation import ValidationFailed

pytestmark = pytest.mark.integration


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_model_beats_baseline_and_metrics_are_written(ad_click_run: dict[str, Any]) -> None:
    metrics = json.loads(Paths.from_env().metrics(CASE).read_text())
    assert metrics["model"]["ne"] < metrics["baseline"]["ne"] < 1.0
    assert metrics["oracle"]["ne"] < metrics["model"]["ne"]  # nothing beats the truth
    assert metrics["coverage"]["impressions"] > 1000
    assert (Paths.from_env().plots(CASE) / "calibration.png").stat().st_size > 1000


def test_deploy_promoted_and_the_service_answered(ad_click_run: dict[str, Any]) -> None:
    deploy = ad_click_run["deploy"]
    assert deploy["promoted"] is True
    assert deploy["champion"] == deploy["challenger"]
    assert deploy["smoke_test"]["status"] == 200 and deploy["smoke_test"]["top"]


def _corrupt(kind: str) -> Callable[[dict[str, pd.DataFrame]], tuple[str, pd.DataFrame]]:
    """Each bad batch the issue names, as a change to one good table."""

    def nulls(t: dict[str, pd.DataFrame]) -> tuple[str, pd.DataFrame]:
        df = t["impressions"].copy()
        df["user_id"] = df["user_id"].astype("Int64")
        df.loc[df.index[:5], "user_id"] = pd.NA
        return "impressions", df

    def out_of_range(t: dict[str, pd.DataFrame]) -> tuple[str, pd.DataFrame]:
        df = t["impressions"].copy()
        df.loc[df.index[:3], "hour"] = 31
        return "impressions", df

    def wrong_type(t: dict[str, pd.DataFrame]) -> tuple[str, pd.DataFrame]:
        return "users", t["users"].assign(age=t["users"]["age"].astype(str))

    def duplicate_keys(t: dict[str, pd.DataFrame]) -> tuple[str, pd.DataFrame]:
        return "ads", pd.concat([t["ads"], t["ads"].head(2)], ignore_index=True)

    def empty(t: dict[str, pd.DataFrame]) -> tuple[str, pd.DataFrame]:
        return "impressions", t["impressions"].head(0)

    def missing_column(t: dict[str, pd.DataFrame]) -> tuple[str, pd.DataFrame]:
        return "impressions", t["impressions"].drop(columns=["device"])

    return locals()[kind]


@pytest.mark.parametrize("kind, expected", [
    ("nulls", "expect_column_values_to_not_be_null"),
    ("out_of_range", "expect_column_values_to_be_between"),
    ("wrong_type", "expect_column_values_to_be_in_type_list"),
    ("duplicate_keys", "expect_column_values_to_be_unique"),
    ("empty", "expect_table_row_count_to_be_between"),
    ("missing_column", "expect_column_to_exist"),
])
def test_bad_batch_is_quarantined_and_good_data_untouched(ad_click_run: dict[str, Any], kind: str,
                                                          expected: str) -> None:
    paths = Paths.from_env()
    batch = ad_click_run["ingest"]
    raw_files = {p.parent.name: p for p in paths.raw(CASE).glob(f"*/{batch}.parquet")}
    originals = {name: p.read_bytes() for name, p in raw_files.items()}
    validated = sorted(paths.validated(CASE).rglob("*.parquet"))
    before = {p: _digest(p) for p in validated}
    table, bad = _corrupt(kind)({n: pd.read_parquet(p) for n, p in raw_files.items()})
    bad.to_parquet(raw_files[table], index=False)
    try:
        with pytest.raises(ValidationFailed) as err:
            ad_click_flow(steps=["validate"])
    finally:
        for name, blob in originals.items():
            raw_files[name].write_bytes(blob)
    assert err.value.table == table
    assert expected in str(err.value)
    quarantined = paths.quarantine(CASE) / table / f"{batch}.parquet"
    assert quarantined.exists()
    result = json.loads(quarantined.with_suffix(".json").read_text())
    assert result["table"] == table and any(expected in p for p in result["problems"])
    assert {p: _digest(p) for p in validated} == before  # the good data already landed is untouched


def test_rerun_after_crash_resumes_and_outputs_are_consistent(ad_click_run: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.core import feast, registry

    paths = Paths.from_env()
    # Lose the features step's outputs so it runs again, then crash training half-way: after the test
    # predictions were written, while saving the model (the model store went away).
    for f in paths.features(CASE).glob("*.parquet"):
        f.unlink()
    real = registry.save

    def crash(*args: Any, **kwargs: Any) -> str:
        raise ConnectionError("model store went away mid-save")

    monkeypatch.setattr(registry, "save", crash)
    with pytest.raises(ConnectionError):
        ad_click_flow(steps=["ingest", "validate", "features", "train", "evaluate"])
    done = {p: p.stat().st_mtime_ns for p in [*paths.raw(CASE).rglob("*.parquet"),
                                              *paths.validated(CASE).rglob("*.parquet"),
                                              *paths.features(CASE).glob("*.parquet")]}
    monkeypatch.setattr(registry, "save", real)
    out = ad_click_flow(steps=["ingest", "validate", "features", "train", "evaluate"])
    # The steps that finished before the crash were served from the cache, not redone.
    assert {p: p.stat().st_mtime_ns for p in done} == done
    tables = {p.stem: pd.read_parquet(p) for p in paths.features(CASE).glob("*.parquet")}
    assert {k: len(v) for k, v in tables.items() if k in out["features"]["rows"]} == out["features"]["rows"]
    assert not list(paths.data.rglob("*.tmp-*"))
    # The rerun's outputs agree with each other: the metrics name the model that was saved, and
    # the online store serves the features that were built.
    challenger = json.loads((paths.work(CASE) / "challenger.json").read_text())
    assert challenger["tag"] == out["train"] == out["evaluate"]["model_tag"]
    assert registry.info(challenger["tag"])["metrics"]["model"]["ne"] == pytest.approx(out["evaluate"]["model"]["ne"])
    user = int(tables["user_ctr"]["user_id"].iloc[0])
    online = feast.store(paths).get_online_features(features=["user_ctr:user_impressions"],
                                                    entity_rows=[{"user_id": user}])
    assert online.to_dict()["user_impressions"][0] is not None


def test_monitor_raises_the_alarm_on_drift_only(ad_click_run: dict[str, Any]) -> None:
    calm = ad_click_flow(steps=["monitor"], drift=0.0)["monitor"]
    moved = ad_click_flow(steps=["monitor"], drift=1.0)["monitor"]
    assert moved["drift_share"] > calm["drift_share"]
    assert moved["alarm"] and not calm["alarm"]
    assert Path(moved["html_path"]).exists()
