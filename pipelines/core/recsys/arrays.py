"""Array helpers every recommender stage shares: timestamps as int64 nanoseconds, numbers as floats.

A request holds one user's few hundred candidates, where pandas' per-call bookkeeping would cost more than
the models; these give the stages plain numpy arrays whatever the column's unit or missing-value marker.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

NAT = np.iinfo(np.int64).min
"""What ``utc_ns`` gives for a missing timestamp."""


def utc_ns(ts: Any) -> np.ndarray | int:
    """UTC nanoseconds since the epoch (NAT where missing), for cheap comparisons whatever the column's unit.

    Takes a Timestamp, a Series, a numpy ``datetime64`` array (read as UTC) or anything ``pd.to_datetime`` reads.
    """
    if isinstance(ts, pd.Timestamp):
        return int(ts.value)
    if isinstance(ts, np.ndarray) and ts.dtype.kind == "M":
        return ts.astype("datetime64[ns]").view(np.int64)
    if not isinstance(ts, pd.Series):
        ts = pd.Series(ts)
    if not (isinstance(ts.dtype, pd.DatetimeTZDtype) or ts.dtype.kind == "M"):
        ts = pd.to_datetime(ts, utc=True)
    return ts.array.as_unit("ns").asi8


def as_floats(values: Any) -> np.ndarray:
    """Numbers as a float array, NaN where missing: ``None`` from online reads, ``pd.NA`` from nullable columns."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(float)
    if not isinstance(values, pd.Series):
        try:
            return np.asarray(values, dtype=float)  # a list with None: NaN there
        except (TypeError, ValueError):
            values = pd.Series(list(values), dtype=object)
    return pd.to_numeric(values, errors="coerce").to_numpy(float, na_value=np.nan)


def catalog_positions(catalog: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column of each id in the sorted ``catalog`` and whether the id is in it at all."""
    col = np.searchsorted(catalog, ids).clip(0, max(0, len(catalog) - 1))
    return col, catalog[col] == ids
