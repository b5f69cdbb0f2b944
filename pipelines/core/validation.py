"""The validation gate: a batch passes its Great Expectations suite or is quarantined whole.

Tables are declared once as ``TableSchema`` (columns, keys, ranges, allowed values); the GX suite is
derived from it, so a case study writes its data contract and never GX boilerplate. A failed batch is
written to ``quarantine/`` beside its validation result, nothing reaches ``validated/``, and the caller
gets ``ValidationFailed`` with a summary a person can act on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from pipelines.core.io import copy_atomic, write_json

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
    """A batch broke its contract; it is in quarantine and the message says what to fix."""

    def __init__(self, table: str, batch: str, problems: list[str], quarantined: Path) -> None:
        self.table, self.batch, self.problems, self.quarantined = table, batch, problems, quarantined
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"table '{table}', batch '{batch}' failed validation and was quarantined at {quarantined}:\n"
            f"{lines}\nFix the source data and run the step again; validated data was not changed."
        )


def build_suite(schema: TableSchema) -> Any:
    """Translate the contract into a GX ExpectationSuite."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"{schema.name}_suite")
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=schema.min_rows))
    for col in schema.columns:
        if col.name in schema.optional:
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
    result = batch.validate(build_suite(schema)).to_json_dict()
    unknown = sorted(set(df.columns) - set(schema.column_names))
    if unknown:  # extra columns are a contract change the owner must approve, not noise to carry along
        result["success"] = False
        result["results"].append(
            {"success": False, "expectation_config": {"type": "unexpected_columns", "kwargs": {"column_list": unknown}},
             "result": {"observed_value": unknown}}
        )
    return bool(result["success"]), result


def gate(raw: Path, schema: TableSchema, validated_dir: Path, quarantine_dir: Path) -> Path:
    """Validate one raw batch file; copy it to ``validated/`` or to quarantine (with its result) and raise.

    The raw bytes are copied, not re-serialised, so a batch with broken types is kept exactly as it came.
    """
    batch = raw.stem
    try:
        df = pd.read_parquet(raw)
    except Exception as exc:  # an unreadable file is a failed batch, not a crash
        passed, result = False, {"success": False, "results": [
            {"success": False, "expectation_config": {"type": "readable_parquet", "kwargs": {}},
             "exception_info": {"exception_message": f"{type(exc).__name__}: {exc}"}}]}
    else:
        passed, result = validate_frame(df, schema)
    if passed:
        return copy_atomic(raw, validated_dir / schema.name / f"{batch}.parquet")
    target = quarantine_dir / schema.name / f"{batch}.parquet"
    problems = _problems(result)
    write_json({"table": schema.name, "batch": batch, "source": str(raw), "problems": problems,
                "gx_result": result}, target.with_suffix(".json"))
    copy_atomic(raw, target)
    raise ValidationFailed(schema.name, batch, problems, target)
