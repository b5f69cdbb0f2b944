"""Reading a user's own files (CSV or Parquet) for ``--source file``: errors name the file and the column.

Every case's file reader maps its documented format onto its tables with these, so a missing file or
column, an unreadable format, an id that is not an integer or a timestamp that is not one gets the same
one-line message everywhere; what is left (ranges, nulls, duplicates) is the validation gate's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.validation import TableSchema

FORMATS = {".csv": "CSV", ".parquet": "Parquet", ".pq": "Parquet"}
INT64_MAX = 2**63 - 1
UNKNOWN = "unknown"
"""The explicit value of a string attribute a real file does not provide."""


def read_table(path: Path, what: str) -> pd.DataFrame:
    """The file as a frame with lower-case column names, or a ValueError that says what is wrong."""
    if not path.exists():
        raise ValueError(f"{what} file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"{what} file {path} is not a file")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{what} file {path} has suffix {path.suffix!r}; expected one of "
                         f"{', '.join(sorted(FORMATS))} (CSV or Parquet)")
    try:
        frame = pd.read_csv(path) if fmt == "CSV" else pd.read_parquet(path)
    except Exception as exc:  # every reader error means the same to the user: not a readable file
        raise ValueError(f"{what} file {path} is not a readable {fmt} file: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if frame.empty:
        raise ValueError(f"{what} file {path} has no rows")
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame


def require(frame: pd.DataFrame, path: Path, what: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} file {path} lacks column(s) {', '.join(missing)}; it needs "
                         f"{', '.join(columns)} and has {', '.join(map(str, frame.columns))}")


def examples(values: pd.Series) -> str:
    return ", ".join(repr(v) for v in values.drop_duplicates().head(3).tolist())


def ids(values: pd.Series, path: Path, column: str) -> pd.Series:
    """Integer ids (nullable if some are missing); their range is the gate's to check."""
    if pd.api.types.is_bool_dtype(values):
        raise ValueError(f"{path}: column {column!r} holds true/false values; it must hold integer ids")
    number = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & (number.isna() | (number % 1 != 0))
    if bad.any():
        raise ValueError(f"{path}: column {column!r} must hold integer ids; {int(bad.sum())} rows do not, e.g. "
                         f"{examples(values[bad])}. Map your ids to integers first.")
    # Feast keys are int64: a larger id would wrap around silently (9223372036854775808 -> negative).
    if pd.api.types.is_float_dtype(number):  # a float of 2**63 - 1 is 2**63 already: compare as floats
        huge = number.notna() & (number.abs() >= 2.0**63)
    else:
        huge = number.notna() & ((number > INT64_MAX) | (number < -INT64_MAX))
    if huge.any():
        raise ValueError(f"{path}: column {column!r} has {int(huge.sum())} ids beyond the 64-bit range "
                         f"(|id| > {INT64_MAX}), e.g. {examples(values[huge])}. Map your ids to smaller integers.")
    return integers(number)


def integers(values: pd.Series) -> pd.Series:
    """int64, or pandas' nullable Int64 when some are missing (the gate then reports the nulls)."""
    return values.astype("Int64" if values.isna().any() else np.int64)


def timestamps(values: pd.Series, path: Path, column: str) -> pd.Series:
    """UTC timestamps from datetimes, unix seconds or ISO-8601 strings."""
    if pd.api.types.is_bool_dtype(values):
        raise ValueError(f"{path}: column {column!r} holds true/false values, not timestamps; expected ISO-8601 "
                         f"(2024-05-01T12:00:00Z), a datetime or unix seconds")
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.tz_localize("UTC")
    if pd.api.types.is_numeric_dtype(values):
        if values.abs().max() > 1e11:
            raise ValueError(f"{path}: column {column!r} holds numbers up to {values.max():.0f}, which look like "
                             f"unix milliseconds or smaller units; expected unix seconds")
        return pd.to_datetime(values, unit="s", utc=True)
    parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    bad = values.notna() & parsed.isna()
    if bad.any():
        raise ValueError(f"{path}: column {column!r} has {int(bad.sum())} values that are not timestamps, e.g. "
                         f"{examples(values[bad])}; expected ISO-8601 (2024-05-01T12:00:00Z), a datetime "
                         f"or unix seconds")
    return parsed


def empty(schema: TableSchema) -> pd.DataFrame:
    """A table a file does not provide (no reports, no friend requests): no rows, the contract's types."""
    kinds = {"timestamp": "datetime64[ns, UTC]", "int": "int64", "float": "float64"}
    return pd.DataFrame({c.name: pd.Series(dtype=kinds.get(c.kind, object)) for c in schema.columns})


def users_from_log(log: pd.DataFrame) -> pd.DataFrame:
    """One row per user seen; a log says nothing about demographics, so they are explicitly unknown."""
    first = log.groupby("user_id", sort=True)["event_timestamp"].min()
    n = len(first)
    return pd.DataFrame({
        "user_id": first.index.to_numpy(),
        "signup_ts": first.to_numpy(),
        "age": pd.array([pd.NA] * n, dtype="Int64"),
        "gender": "u",
        "country": UNKNOWN,
        "language": UNKNOWN,
    })
