"""Where video_recommendation data comes from: the simulator one window at a time, or a user's own log.

A real log is a CSV or Parquet file with one row per interaction: ``user_id``, ``item_id``, ``timestamp``
and optionally ``rating`` and/or ``event``; an optional items file describes the videos. ``read_file``
maps them onto the same three tables the simulator produces. Problems that stop the mapping (a missing
file or column, an unreadable format, a timestamp or rating that is not one) raise ``ValueError`` naming
the file, the column and what was expected; everything else (id ranges, nulls, duplicates) is checked by
the validation gate like any other batch, so a bad file is quarantined, not half-loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.case import Run
from pipelines.core.files import FORMATS, UNKNOWN
from pipelines.core.files import examples as _examples
from pipelines.core.files import ids as _ids
from pipelines.core.files import integers as _integers
from pipelines.core.files import read_table as _read
from pipelines.core.files import require as _require
from pipelines.core.files import timestamps as _timestamps
from pipelines.core.files import users_from_log as _users
from pipelines.world.population import SCALES
from pipelines.world.video import VideoWorld

__all__ = ["FORMATS", "UNKNOWN", "PositiveRule", "read_file", "read_files", "simulate"]

_VIDEO_TEXT = ("language", "category", "tags", "title")


@dataclass(frozen=True)
class PositiveRule:
    """Which rows of a real log are positive engagement (the ``positive`` label).

    A row is positive if its ``rating`` is at least ``min_rating`` or its ``event`` (case-insensitive) is
    one of ``positive_events``; a missing rating or event is not positive. A log with neither column is
    implicit feedback: every row is positive.
    """

    min_rating: float = 4.0
    positive_events: tuple[str, ...] = ("click", "like", "watch", "purchase", "positive")


def simulate(run: Run, start_day: int, n_days: int, drift: float = 0.0) -> dict[str, pd.DataFrame]:
    """Tables of one simulated window; engagement labels are complete when the window is pulled."""
    return VideoWorld(seed=run.params.seed, scale=SCALES[run.params.scale]).window(start_day, n_days, drift)


def read_files(run: Run, files: Mapping[str, Path]) -> dict[str, pd.DataFrame]:
    """The file source: ``files["interactions"]`` (and ``files["items"]``) under params' positive rule."""
    f = run.params.file
    rule = PositiveRule(min_rating=f.min_rating, positive_events=tuple(f.positive_events))
    return read_file(Path(files["interactions"]), Path(files["items"]) if files.get("items") else None, rule)


def read_file(interactions: Path, items: Path | None = None,
              positive: PositiveRule = PositiveRule()) -> dict[str, pd.DataFrame]:
    """The users, videos and interactions tables of a real log (and optional items file).

    Timestamps may be ISO-8601 strings (with or without an offset; naive means UTC), datetimes or unix
    seconds; all become UTC. Rows come in time order; ``event_id`` is a hash of the event. Users are the
    ids seen in the log, signed up at their first event, demographics unknown. Videos are the items
    file's rows plus any item seen only in the log; a missing ``upload_ts`` is the item's first
    interaction (or the log's start for an item nobody interacted with).
    """
    interactions = Path(interactions)
    raw = _read(interactions, "interactions")
    _require(raw, interactions, "interactions", ("user_id", "item_id", "timestamp"))
    log = pd.DataFrame({
        "event_timestamp": _timestamps(raw["timestamp"], interactions, "timestamp"),
        "user_id": _ids(raw["user_id"], interactions, "user_id"),
        "video_id": _ids(raw["item_id"], interactions, "item_id"),
        "positive": _label(raw, interactions, positive),
    })
    log = log.sort_values(["event_timestamp", "user_id", "video_id"], kind="stable", ignore_index=True)
    log.insert(0, "event_id", _event_ids(log))
    return {"users": _users(log), "videos": _videos(log, items), "interactions": log}


def _event_ids(log: pd.DataFrame) -> np.ndarray:
    """Ids from the event itself (who, what, when, and which repeat of it), not from the row number.

    So rereading a file gives the same ids, the same event in two overlapping files is one event (the
    later batch wins), and two different files never overwrite each other's events.
    """
    who_what_when = ["user_id", "video_id", "event_timestamp"]
    key = log[who_what_when].assign(repeat=log.groupby(who_what_when, dropna=False).cumcount())
    return (pd.util.hash_pandas_object(key, index=False).to_numpy() >> np.uint64(1)).astype(np.int64)


def _label(raw: pd.DataFrame, path: Path, rule: PositiveRule) -> pd.Series:
    """The ``positive`` label under ``rule`` (see ``PositiveRule``)."""
    if "rating" not in raw and "event" not in raw:
        return pd.Series(1, index=raw.index, dtype=np.int64)
    positive = pd.Series(False, index=raw.index)
    if "rating" in raw:
        rating = pd.to_numeric(raw["rating"], errors="coerce")
        bad = raw["rating"].notna() & rating.isna()
        if bad.any():
            raise ValueError(f"{path}: column 'rating' must be numeric; {int(bad.sum())} rows are not, e.g. "
                             f"{_examples(raw['rating'][bad])}")
        positive |= rating >= rule.min_rating
    if "event" in raw:
        events = {e.strip().lower() for e in rule.positive_events}
        positive |= raw["event"].astype("string").str.strip().str.lower().isin(events).fillna(False)
    return positive.astype(np.int64)


# -- the tables -------------------------------------------------------------------------------------------
def _videos(log: pd.DataFrame, items: Path | None) -> pd.DataFrame:
    """The items file's videos plus any seen only in the log, unknown attributes made explicit."""
    first_seen = log.groupby("video_id")["event_timestamp"].min()
    if items is None:
        videos = pd.DataFrame({"video_id": first_seen.index.to_numpy()})
    else:
        items = Path(items)
        raw = _read(items, "items")
        _require(raw, items, "items", ("item_id",))
        videos = pd.DataFrame({"video_id": _ids(raw["item_id"], items, "item_id")})
        if "upload_ts" in raw:
            videos["upload_ts"] = _timestamps(raw["upload_ts"], items, "upload_ts")
        if "creator_id" in raw:
            videos["creator_id"] = _ids(raw["creator_id"], items, "creator_id")
        if "duration_s" in raw:
            duration = pd.to_numeric(raw["duration_s"], errors="coerce")
            bad = raw["duration_s"].notna() & duration.isna()
            if bad.any():
                raise ValueError(f"{items}: column 'duration_s' must be numeric seconds; {int(bad.sum())} rows are "
                                 f"not, e.g. {_examples(raw['duration_s'][bad])}")
            videos["duration_s"] = duration.astype(float)
        for col in _VIDEO_TEXT:
            if col in raw:
                videos[col] = raw[col].astype("string").str.strip()
        only_in_log = first_seen.index.difference(pd.Index(videos["video_id"].dropna()))
        videos = pd.concat([videos, pd.DataFrame({"video_id": only_in_log.to_numpy()})], ignore_index=True)
        videos["video_id"] = _integers(videos["video_id"])
    if "upload_ts" not in videos:
        videos["upload_ts"] = pd.Series(pd.NaT, index=videos.index, dtype=log["event_timestamp"].dtype)
    videos["upload_ts"] = (videos["upload_ts"].fillna(videos["video_id"].map(first_seen))
                           .fillna(log["event_timestamp"].min()))
    if "duration_s" not in videos:
        videos["duration_s"] = np.nan
    for col in _VIDEO_TEXT:
        text = videos[col] if col in videos else pd.Series(pd.NA, index=videos.index, dtype="string")
        if col == "tags":  # "|"-joined lower-case tags, like the simulator's
            text = text.str.lower().str.replace(r"\s*\|[\s|]*", "|", regex=True).str.strip("|")
        videos[col] = text.replace("", pd.NA).fillna(UNKNOWN).astype(object)
    order = ["video_id", "upload_ts", "creator_id", "duration_s", *_VIDEO_TEXT]
    return videos[[c for c in order if c in videos]].sort_values("video_id", ignore_index=True)
