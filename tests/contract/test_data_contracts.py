"""Contracts every registered case keeps about its data, parametrized over the registry.

A new case gets these by registering: a bad batch is quarantined whole and nothing validated changes;
a column that may be absent is still checked when present; runs of different worlds never mix.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines import cases
from pipelines.core.case import Run, TableSchema
from pipelines.core.flowset import call, open_run, run_case
from pipelines.core.settings import Paths
from pipelines.core.validation import ValidationFailed

pytestmark = pytest.mark.integration
CASES = list(cases.CASES)


def _digests(root: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _int_column(schema: TableSchema, *, key: bool) -> str:
    names = [c.name for c in schema.columns if c.kind in ("int", "float") and c.name not in schema.optional
             and (c.name in schema.key) == key]
    return names[0]


def _corrupt(kind: str, schema: TableSchema, df: pd.DataFrame) -> pd.DataFrame:
    """Each bad-batch class, derived from the table's contract alone (so it works for any case)."""
    if kind == "nulls":  # nulls in the key
        col = schema.key[0]
        df = df.assign(**{col: df[col].astype("Int64")})
        df.loc[df.index[:5], col] = pd.NA
        return df
    if kind == "out_of_range":
        col = next(c for c in schema.columns if (c.max is not None or c.min is not None)
                   and c.name not in schema.optional and c.name not in schema.key)
        df = df.copy()
        df.loc[df.index[:3], col.name] = col.max + 10 if col.max is not None else col.min - 10
        return df
    if kind == "wrong_type":
        col = _int_column(schema, key=False)
        return df.assign(**{col: df[col].astype(str)})
    if kind == "duplicate_keys":
        return pd.concat([df, df.head(2)], ignore_index=True)
    if kind == "empty":
        return df.head(0)
    if kind == "missing_column":
        return df.drop(columns=[next(c.name for c in schema.columns
                                     if c.name not in schema.key and c.name not in schema.optional)])
    raise AssertionError(kind)


def _new_batch(run: Run, session_batch: str, name: str, change: Callable[[str, pd.DataFrame], pd.DataFrame]
               ) -> None:
    """Land a new batch ``name``: the session's batch, each table passed through ``change``."""
    for t in run.spec.tables:
        src = run.paths.raw(run.case) / t.name / f"{session_batch}.parquet"
        change(t.name, pd.read_parquet(src)).to_parquet(src.with_name(f"{name}.parquet"), index=False)


def _cleanup(run: Run, name: str) -> None:
    for p in run.paths.raw(run.case).glob(f"*/{name}.parquet"):
        p.unlink()
    shutil.rmtree(run.paths.quarantine(run.case) / name, ignore_errors=True)


EXPECTED = {"nulls": "expect_column_values_to_not_be_null", "out_of_range": "expect_column_values_to_be_between",
            "wrong_type": "expect_column_values_to_be_in_type_list",
            "duplicate_keys": "unique", "empty": "expect_table_row_count_to_be_between",
            "missing_column": "expect_column_to_exist"}


@pytest.mark.parametrize("kind", list(EXPECTED))
@pytest.mark.parametrize("case", CASES)
def test_a_bad_batch_is_quarantined_whole(case: str, kind: str, case_run: Callable[[str], dict[str, Any]]) -> None:
    """The last table of a new batch is bad, the others are fine: none of them may reach validated/."""
    session = case_run(case)
    run = open_run(cases.spec(case))
    bad_table = run.spec.tables[-1]
    before = _digests(run.paths.validated(case))
    batch = f"bad-{kind}"
    _new_batch(run, session["ingest"], batch,
               lambda name, df: _corrupt(kind, bad_table, df) if name == bad_table.name else df)
    try:
        with pytest.raises(ValidationFailed) as err:
            call(run, "validate", batch=batch)
        assert err.value.table == bad_table.name and list(err.value.failures) == [bad_table.name]
        assert EXPECTED[kind] in str(err.value) and "quarantined whole" in str(err.value)
        where = run.paths.quarantine(case) / batch
        assert {p.name for p in where.iterdir()} == {f"{t.name}.{ext}" for t in run.spec.tables
                                                     for ext in ("parquet", "json")}
        result = json.loads((where / f"{bad_table.name}.json").read_text())
        assert result["table"] == bad_table.name and any(EXPECTED[kind] in p for p in result["problems"])
        assert _digests(run.paths.validated(case)) == before  # every table: byte-identical, no new file
    finally:
        _cleanup(run, batch)


def _optional_bounded(spec: Any, tables: dict[str, pd.DataFrame]) -> tuple[str, Any]:
    for t in spec.tables:
        for c in t.columns:
            if c.name in t.optional and (c.min is not None or c.max is not None) and c.name in tables[t.name]:
                return t.name, c
    raise AssertionError("no optional bounded column present")


@pytest.mark.parametrize("case", CASES)
def test_an_optional_column_is_checked_when_present(case: str, case_run: Callable[[str], dict[str, Any]]) -> None:
    session = case_run(case)
    run = open_run(cases.spec(case))
    raw = {t.name: pd.read_parquet(run.paths.raw(case) / t.name / f"{session['ingest']}.parquet")
           for t in run.spec.tables}
    table, col = _optional_bounded(run.spec, raw)
    bad = col.max + 0.5 if col.max is not None else col.min - 7

    def change(name: str, df: pd.DataFrame) -> pd.DataFrame:
        if name != table:
            return df
        df = df.copy()
        df.loc[df.index[:2], col.name] = bad
        return df

    _new_batch(run, session["ingest"], "bad-optional", change)
    try:
        with pytest.raises(ValidationFailed, match=col.name) as err:
            call(run, "validate", batch="bad-optional")
        assert err.value.table == table
    finally:
        _cleanup(run, "bad-optional")


@pytest.mark.parametrize("case", CASES)
def test_runs_of_another_world_never_mix_with_this_one(case: str, case_run: Callable[[str], dict[str, Any]]) -> None:
    case_run(case)
    root = Paths.from_env()
    before = _digests(root.validated(case))
    spec = cases.spec(case)
    out = run_case(spec, ["ingest", "validate"], seed=4)
    other = open_run(spec, seed=4)
    assert other.world.id == "simulator-tiny-seed4" and other.paths.home == root.home / "worlds" / other.world.id
    assert out["ingest"] == case_run(case)["ingest"]  # the same window name: only the home keeps them apart
    assert _digests(root.validated(case)) == before
    assert sorted(other.paths.validated(case).rglob("*.parquet"))
    assert json.loads((root.data / "world.json").read_text())["seed"] == 3
