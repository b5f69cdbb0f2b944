"""Feature transforms shared by every case; the same code builds training and serving inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.io import write_parquet
from pipelines.core.settings import Paths


def user_profile_table(users: pd.DataFrame) -> pd.DataFrame:
    """The shared user profile feature table, valid from each user's signup."""
    out = users[["user_id", "age", "gender", "country", "language"]].copy()
    out["event_timestamp"] = users["signup_ts"]
    return out


def user_profile_file(paths: Paths, case: str) -> Path:
    """The case's file of the shared profile table: ``features/shared/user_profile/<case>.parquet``."""
    return paths.features("shared") / "user_profile" / f"{case}.parquet"


def write_user_profile(users: pd.DataFrame, paths: Paths, case: str) -> Path:
    """Write a case's validated users as its file of the one shared profile table.

    The shared ``user_profile`` view reads every file of the folder, so each case owns exactly one file
    (its features stage's DVC output, never another stage's), and one case's run cannot drop users
    another case serves. The shared population makes the rows agree where cases overlap.
    """
    return write_parquet(user_profile_table(users), user_profile_file(paths, case))


def smoothed_rate(hits: np.ndarray | pd.Series, trials: np.ndarray | pd.Series, prior: float,
                  strength: float) -> np.ndarray:
    """A Beta-prior smoothed rate, so a key seen twice does not get a CTR of 0 or 1."""
    return (np.asarray(hits, float) + prior * strength) / (np.asarray(trials, float) + strength)


def rate_snapshots(events: pd.DataFrame, keys: list[str], label: str, matured_at: pd.Series, prefix: str,
                   prior: float, strength: float = 20.0, rate: str = "ctr") -> pd.DataFrame:
    """Daily cumulative counts and smoothed rate of ``label`` per key, point-in-time correct.

    An event counts from the first midnight after its label matured (``matured_at``), and the row's
    ``event_timestamp`` is that midnight: a join as of time t only sees labels known before t.
    The rate column is ``<prefix>_<rate>`` (a click-through rate, a positive-engagement rate, ...).
    """
    snap = matured_at.dt.floor("D") + pd.Timedelta(days=1)
    daily = (events.assign(event_timestamp=snap.to_numpy())
             .groupby([*keys, "event_timestamp"], observed=True)[label].agg(["size", "sum"]).reset_index())
    daily = daily.sort_values([*keys, "event_timestamp"])
    grouped = daily.groupby(keys, observed=True)
    n = grouped["size"].cumsum().to_numpy()
    hits = grouped["sum"].cumsum().to_numpy()
    out = daily[[*keys, "event_timestamp"]].copy()
    out[f"{prefix}_impressions"] = n.astype(np.int64)
    out[f"{prefix}_{rate}"] = smoothed_rate(hits, n, prior, strength).astype(np.float32)
    return out.reset_index(drop=True)


def count_snapshots(events: pd.DataFrame, keys: list[str], happened_at: pd.Series, name: str) -> pd.DataFrame:
    """Daily cumulative count of rows per key, point-in-time correct, as column ``name``.

    A row counts from the first midnight after it happened (as ``rate_snapshots`` counts labels): a join
    as of time t sees only what happened before the day of t began.
    """
    snap = happened_at.dt.floor("D") + pd.Timedelta(days=1)
    daily = (events[keys].assign(event_timestamp=snap.to_numpy())
             .groupby([*keys, "event_timestamp"], observed=True).size().rename(name).reset_index()
             .sort_values([*keys, "event_timestamp"]))
    daily[name] = daily.groupby(keys, observed=True)[name].cumsum().astype(np.int64)
    return daily.reset_index(drop=True)


def unix_seconds(ts: pd.Series) -> np.ndarray:
    """Seconds since 1970: the clock of request sources and numeric time features (they carry numbers)."""
    return (pd.to_datetime(ts, utc=True) - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
