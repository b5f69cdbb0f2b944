"""The validation gate: a batch passes its Great Expectations suite or is quarantined whole.

Tables are declared once as ``TableSchema`` (columns, keys, ranges, allowed values); the GX suite is
derived from it, so a case study writes its data contract and never GX boilerplate. A failed batch is
written to ``quarantine/<batch>/`` whole (every table, beside its validation result), nothing of it
reaches ``validated/``, and the caller gets ``ValidationFailed`` with a summary a person can act on.
"""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from pipelines.core.io import atomic_path, copy_atomic, write_json

Kind = Literal["int", "float", "str", "timestamp"]

# Pandas / pyarrow dtype names GX reports for each logical kind.
_TYPE_LISTS: dict[str, list[str]] = {
    "int": ["int64", "int32", "Int64", "Int32", "Int64Dtype", "int16", "int8"],  # Int64Dtype: nullable ints
    "float": ["float64", "float32", "Float64", "int64", "int32", "Int64"],
    "str": ["object", "str", "string", "StringDtype", "string[python]", "string[pyarrow]"],
    "timestamp": ["datetime64[ns]", "datetime64[us]", "datetime64[ms]"]  # checked as naive UTC,
}


@dataclass(frozen=True)
class Column:
    """One column's contract."""

    name: str
    kind: Kind
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TableSchema:
    """A table's data contract: its columns, the key that must be unique, and the smallest valid batch."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    min_rows: int = 1
    optional: tuple[str, ...] = field(default=())  # columns a real-data file may omit (e.g. oracle p)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


class ValidationFailed(RuntimeError):
    """A batch broke its contract; it is in quarantine whole and the message says what to fix.

    ``table`` is the first failing table; ``failures`` maps every failing table to its problems.
    """

    def __init__(self, batch: str, failures: dict[str, list[str]], quarantined: Path) -> None:
        self.batch, self.failures, self.quarantined = batch, failures, quarantined
        self.table = next(iter(failures))
        self.problems = failures[self.table]
        lines = "\n".join(f"  - {table}: {p}" for table, problems in failures.items() for p in problems)
        super().__init__(
            f"batch '{batch}' failed validation ({', '.join(failures)}) and was quarantined whole at "
            f"{quarantined}:\n{lines}\nFix the source data and run the step again; validated data was not changed."
        )


def build_suite(schema: TableSchema, present: set[str] | None = None) -> Any:
    """Translate the contract into a GX ExpectationSuite.

    An optional column is checked like any other when it is there (``present``): it may be absent, not wrong.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"{schema.name}_suite")
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=schema.min_rows))
    for col in schema.columns:
        if col.name in schema.optional and (present is None or col.name not in present):
            continue
        suite.add_expectation(gxe.ExpectColumnToExist(column=col.name))
        suite.add_expectation(gxe.ExpectColumnValuesToBeInTypeList(column=col.name, type_list=_TYPE_LISTS[col.kind]))
        if not col.nullable:
            suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=col.name))
        if col.min is not None or col.max is not None:
            suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=col.name, min_value=col.min,
                                                                    max_value=col.max))
        if col.values is not None:
            allowed = [str(v) for v in col.values]
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=col.name, value_set=allowed))
    if len(schema.key) == 1:
        suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=schema.key[0]))
    else:
        suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(schema.key)))
    return suite


def _context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def _problems(result: dict[str, Any]) -> list[str]:
    """One readable line per failed expectation."""
    out = []
    failed = [r for r in result["results"] if not r["success"]]
    # A missing column fails every expectation on it; report only the root cause.
    missing = {r["expectation_config"]["kwargs"]["column"] for r in failed
               if r["expectation_config"]["type"] == "expect_column_to_exist"}
    for r in failed:
        cfg = r["expectation_config"]
        if cfg["kwargs"].get("column") in missing and cfg["type"] != "expect_column_to_exist":
            continue
        kwargs = {k: v for k, v in cfg["kwargs"].items() if k not in ("batch_id", "column", "result_format")}
        col = cfg["kwargs"].get("column") or cfg["kwargs"].get("column_list")
        res = r.get("result") or {}
        detail = ""
        if "unexpected_count" in res:
            sample = res.get("partial_unexpected_list", [])[:5]
            detail = f": {res['unexpected_count']} bad rows, e.g. {sample}"
        elif "observed_value" in res:
            detail = f": observed {res['observed_value']}"
        err = (r.get("exception_info") or {}).get("exception_message")
        if err and not detail:
            detail = f": {err.splitlines()[0]}"
        where = f"column '{col}' " if col else ""
        out.append(f"{where}{cfg['type']} {kwargs}{detail}".replace(" {}", ""))
    return out


def validate_frame(df: pd.DataFrame, schema: TableSchema) -> tuple[bool, dict[str, Any]]:
    """Run the suite on a frame; returns (passed, GX result as JSON-safe dict)."""
    ctx = _context()
    # GX cannot type-check tz-aware columns; compare them as naive UTC, which is what they mean here.
    df = df.assign(**{c: df[c].dt.tz_convert(None) for c in df.columns if isinstance(df[c].dtype, pd.DatetimeTZDtype)})
    asset = ctx.data_sources.add_pandas("casebook").add_dataframe_asset(schema.name)
    batch = asset.add_batch_definition_whole_dataframe("batch").get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(build_suite(schema, set(df.columns))).to_json_dict()
    unknown = sorted(set(df.columns) - set(schema.column_names))
    if unknown:  # extra columns are a contract change the owner must approve, not noise to carry along
        result["success"] = False
        result["results"].append(
            {"success": False, "expectation_config": {"type": "unexpected_columns", "kwargs": {"column_list": unknown}},
             "result": {"observed_value": unknown}}
        )
    return bool(result["success"]), result


def _check(raw: Path, schema: TableSchema) -> tuple[bool, dict[str, Any]]:
    try:
        df = pd.read_parquet(raw)
    except Exception as exc:  # an unreadable file is a failed batch, not a crash
        return False, {"success": False, "results": [
            {"success": False, "expectation_config": {"type": "readable_parquet", "kwargs": {}},
             "exception_info": {"exception_message": f"{type(exc).__name__}: {exc}"}}]}
    return validate_frame(df, schema)


def gate_batch(raw: dict[str, Path], schemas: tuple[TableSchema, ...], validated_dir: Path,
               quarantine_dir: Path) -> dict[str, Path]:
    """Validate every table of one batch; all reach ``validated/`` or none does.

    Every table is checked before anything is copied, so a later table's failure cannot leave an earlier
    table's new file behind. A failed batch goes to quarantine whole (every table, with one result JSON
    per table) and ``ValidationFailed`` names each failing table. The raw bytes are copied, not
    re-serialised, so a batch with broken types is kept exactly as it came.
    """
    batch = next(iter(raw.values())).stem
    results = {s.name: _check(raw[s.name], s) for s in schemas}
    failures = {name: _problems(result) for name, (passed, result) in results.items() if not passed}
    if not failures:
        out = {s.name: validated_dir / s.name / f"{batch}.parquet" for s in schemas}
        with ExitStack() as stack:  # every file is staged before any is renamed into place
            for s in schemas:
                shutil.copyfile(raw[s.name], stack.enter_context(atomic_path(out[s.name])))
        return out
    target = quarantine_dir / batch
    for s in schemas:
        passed, result = results[s.name]
        write_json({"table": s.name, "batch": batch, "source": str(raw[s.name]), "passed": passed,
                    "problems": failures.get(s.name, []), "gx_result": result}, target / f"{s.name}.json")
        copy_atomic(raw[s.name], target / f"{s.name}.parquet")
    raise ValidationFailed(batch, failures, target)
