"""The video data sources: one simulated window, or a user's CSV/Parquet log mapped onto the same tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.core.flowset import window_batch_id
from pipelines.core.validation import TableSchema
from pipelines.video_recommendation.schema import INTERACTIONS, TABLES, USERS, VIDEOS
from pipelines.video_recommendation.source import UNKNOWN, PositiveRule, read_file
from pipelines.world.population import SCALES
from pipelines.world.video import VideoWorld

UTC = "datetime64[ns, UTC]"


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _required(schema: TableSchema) -> list[str]:
    """The columns a file batch has: all but the optional ones."""
    return [c for c in schema.column_names if c not in schema.optional]


def test_simulate_gives_one_window_of_every_table() -> None:
    tables = VideoWorld(seed=5, scale=SCALES["tiny"]).window(3, 1)
    assert set(tables) == {s.name for s in TABLES}
    for schema in TABLES:
        assert list(tables[schema.name].columns) == schema.column_names
    ts = tables["interactions"]["event_timestamp"]
    assert ts.min() >= pd.Timestamp("2026-01-04", tz="UTC") and ts.max() < pd.Timestamp("2026-01-05", tz="UTC")
    assert window_batch_id(3, 1) == "d003-d004"


@pytest.fixture
def ratings() -> pd.DataFrame:
    """A MovieLens-shaped log: timestamps in unix seconds, ratings 1..5, one user's two events out of order."""
    return pd.DataFrame({
        "user_id": [7, 3, 3, 9, 7],
        "item_id": [100, 100, 101, 102, 103],
        "timestamp": [1_714_568_400, 1_714_561_200, 1_714_564_800, 1_714_572_000, 1_714_557_600],
        "rating": [5.0, 3.5, 4.0, np.nan, 2.0],
    })


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_rating_log_maps_onto_the_tables(ratings: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    tables = read_file(_write(ratings, tmp_path / f"ratings{suffix}"))
    it, users, videos = tables["interactions"], tables["users"], tables["videos"]
    assert list(it.columns) == _required(INTERACTIONS)
    assert list(users.columns) == USERS.column_names
    assert list(videos.columns) == _required(VIDEOS)
    # Rows in time order, timestamps in UTC, one non-negative id per event.
    assert str(it["event_timestamp"].dtype) == UTC and it["event_timestamp"].is_monotonic_increasing
    assert it["event_id"].dtype == np.int64 and it["event_id"].is_unique and (it["event_id"] >= 0).all()
    assert it["event_timestamp"].iloc[0] == pd.Timestamp("2024-05-01 10:00:00", tz="UTC")
    assert it["user_id"].tolist() == [7, 3, 3, 7, 9] and it["video_id"].tolist() == [103, 100, 101, 100, 102]
    # rating >= 4 is positive; a missing rating is not.
    assert it["positive"].tolist() == [0, 0, 1, 1, 0]
    assert it["user_id"].dtype == np.int64 and it["positive"].dtype == np.int64
    # Users: the ids seen, signed up at their first event, demographics explicitly unknown.
    assert users["user_id"].tolist() == [3, 7, 9]
    assert users.set_index("user_id").loc[7, "signup_ts"] == pd.Timestamp("2024-05-01 10:00:00", tz="UTC")
    assert users["age"].isna().all() and set(users["gender"]) == {"u"} and set(users["country"]) == {UNKNOWN}
    # Videos: every item seen, uploaded (at the latest) at its first interaction, attributes unknown.
    assert videos["video_id"].tolist() == [100, 101, 102, 103]
    assert videos.set_index("video_id").loc[100, "upload_ts"] == pd.Timestamp("2024-05-01 11:00:00", tz="UTC")
    assert videos["duration_s"].isna().all()
    assert (videos[["language", "category", "tags", "title"]] == UNKNOWN).all().all()


def test_event_ids_identify_events_across_files(ratings: pd.DataFrame, tmp_path: Path) -> None:
    """The same event in an overlapping file keeps its id; a repeated identical row is a second event."""
    first = read_file(_write(ratings, tmp_path / "a.csv"))["interactions"]
    later = pd.concat([ratings.iloc[2:], ratings.iloc[[4]], ratings.assign(timestamp=ratings["timestamp"] + 86_400)])
    second = read_file(_write(later, tmp_path / "b.parquet"))["interactions"]
    assert second["event_id"].is_unique and len(second) == len(later)
    key = ["user_id", "video_id", "event_timestamp"]
    shared = first.merge(second.drop_duplicates(key), on=key, suffixes=("", "_b"))
    assert len(shared) == 3 and (shared["event_id"] == shared["event_id_b"]).all()
    assert first["event_id"].equals(read_file(tmp_path / "a.csv")["interactions"]["event_id"])


def test_the_rating_threshold_is_configurable(ratings: pd.DataFrame, tmp_path: Path) -> None:
    tables = read_file(_write(ratings, tmp_path / "r.csv"), positive=PositiveRule(min_rating=3.5))
    assert tables["interactions"]["positive"].tolist() == [0, 1, 1, 1, 0]


def test_an_event_log_with_datetimes_and_an_items_file(tmp_path: Path) -> None:
    log = pd.DataFrame({
        "User_ID": [1, 2, 2, 3],
        "item_id": [10, 10, 11, 12],
        "timestamp": pd.to_datetime(["2024-05-01 12:00", "2024-05-01 13:00", "2024-05-02 00:00", "2024-05-03 00:00"]),
        "event": ["Like", "impression", " WATCH ", None],
    })
    items = pd.DataFrame({
        "item_id": [10, 11, 99],
        "category": ["Comedy", None, "Drama"],
        "tags": ["Funny | Cats", "", None],
        "duration_s": [100.0, None, 50.0],
        "upload_ts": ["2024-04-01T00:00:00+02:00", None, "2024-03-01"],
    })
    tables = read_file(_write(log, tmp_path / "events.parquet"), _write(items, tmp_path / "items.csv"),
                       PositiveRule(positive_events=("like", "watch")))
    it = tables["interactions"]
    assert str(it["event_timestamp"].dtype) == UTC  # naive datetimes are read as UTC
    assert it["event_timestamp"].iloc[0] == pd.Timestamp("2024-05-01 12:00", tz="UTC")
    assert it["positive"].tolist() == [1, 0, 1, 0]  # events match case- and space-insensitively
    v = tables["videos"].set_index("video_id")
    assert v.index.tolist() == [10, 11, 12, 99]  # the catalogue plus an item seen only in the log
    assert v.loc[10, "upload_ts"] == pd.Timestamp("2024-03-31 22:00", tz="UTC")  # offsets become UTC
    assert v.loc[11, "upload_ts"] == pd.Timestamp("2024-05-02 00:00", tz="UTC")  # unknown: first interaction
    assert v.loc[10, "tags"] == "funny|cats" and v.loc[11, "tags"] == UNKNOWN
    assert v.loc[10, "category"] == "Comedy" and v.loc[11, "category"] == UNKNOWN
    assert v.loc[99, "duration_s"] == 50.0 and np.isnan(v.loc[12, "duration_s"])


def test_a_log_without_rating_or_event_is_implicit_feedback(tmp_path: Path) -> None:
    log = pd.DataFrame({"user_id": [1, 2], "item_id": [5, 6], "timestamp": ["2024-05-01", "2024-05-02T10:00:00Z"]})
    assert read_file(_write(log, tmp_path / "clicks.csv"))["interactions"]["positive"].tolist() == [1, 1]


def test_out_of_range_ids_are_left_for_the_validation_gate(ratings: pd.DataFrame, tmp_path: Path) -> None:
    ratings.loc[0, "user_id"] = -7
    tables = read_file(_write(ratings, tmp_path / "r.csv"))
    assert -7 in tables["users"]["user_id"].tolist() and -7 in tables["interactions"]["user_id"].tolist()


def _bad(tmp_path: Path, case: str) -> tuple[Path, Path | None]:
    """A file with one user mistake, and the items file to pass (if any)."""
    good = pd.DataFrame({"user_id": [1, 2], "item_id": [5, 6], "timestamp": ["2024-05-01", "2024-05-02"],
                         "rating": [5, 1]})
    log = tmp_path / "log.csv"
    if case == "missing file":
        return tmp_path / "nope.csv", None
    if case == "directory":
        return tmp_path, None
    if case == "suffix":
        return _write(good, tmp_path / "log.csv").rename(tmp_path / "log.json"), None
    if case == "unreadable parquet":
        (tmp_path / "log.parquet").write_text("user_id,item_id\n1,2\n")
        return tmp_path / "log.parquet", None
    if case == "empty csv":
        log.write_text("")
        return log, None
    if case == "missing column":
        return _write(good.drop(columns="item_id"), log), None
    if case == "timestamp":
        return _write(good.assign(timestamp=["2024-05-01", "yesterday"]), log), None
    if case == "milliseconds":
        return _write(good.assign(timestamp=[1_714_568_400_000, 1_714_568_400_500]), log), None
    if case == "rating":
        return _write(good.assign(rating=["5", "great"]), log), None
    if case == "ids":
        return _write(good.assign(user_id=["u1", "u2"]), log), None
    if case == "items column":
        return _write(good, log), _write(pd.DataFrame({"id": [5]}), tmp_path / "items.csv")
    if case == "items duration":
        return _write(good, log), _write(pd.DataFrame({"item_id": [5], "duration_s": ["long"]}), tmp_path / "it.csv")
    raise AssertionError(case)


@pytest.mark.parametrize(("case", "message"), [
    ("missing file", r"interactions file .*nope\.csv does not exist"),
    ("directory", r"is not a file"),
    ("suffix", r"log\.json has suffix '\.json'; expected one of \.csv, \.parquet, \.pq"),
    ("unreadable parquet", r"log\.parquet is not a readable Parquet file"),
    ("empty csv", r"log\.csv is not a readable CSV file"),
    ("missing column", r"log\.csv lacks column\(s\) item_id; it needs user_id, item_id, timestamp and has "),
    ("timestamp", r"log\.csv: column 'timestamp' has 1 values that are not timestamps, e.g. 'yesterday'; "
                  r"expected ISO-8601"),
    ("milliseconds", r"column 'timestamp' .* look like unix milliseconds"),
    ("rating", r"log\.csv: column 'rating' must be numeric; 1 rows are not, e.g. 'great'"),
    ("ids", r"log\.csv: column 'user_id' must hold integer ids; 2 rows do not, e.g. 'u1', 'u2'"),
    ("items column", r"items file .*items\.csv lacks column\(s\) item_id"),
    ("items duration", r"it\.csv: column 'duration_s' must be numeric seconds"),
])
def test_a_bad_file_gets_a_message_naming_file_column_and_expectation(tmp_path: Path, case: str,
                                                                     message: str) -> None:
    interactions, items = _bad(tmp_path, case)
    with pytest.raises(ValueError, match=message):
        read_file(interactions, items)


@pytest.mark.parametrize("column, values, message", [
    ("timestamp", [True, False, True, True, False], "'timestamp' holds true/false values, not timestamps"),
    ("user_id", [2**63 + 5, 3, 3, 9, 7], "'user_id' has 1 ids beyond the 64-bit range"),
    ("item_id", [True, False, True, True, False], "'item_id' holds true/false values"),
])
def test_reader_errors_name_the_file_and_the_column(ratings: pd.DataFrame, tmp_path: Path, column: str,
                                                    values: list[object], message: str) -> None:
    bad = ratings.assign(**{column: pd.Series(values, dtype=object if column == "user_id" else None)})
    path = tmp_path / "log.parquet"
    if column == "user_id":  # beyond int64: only a text file can carry it
        path = tmp_path / "log.csv"
        bad.to_csv(path, index=False)
    else:
        bad.to_parquet(path, index=False)
    with pytest.raises(ValueError, match=str(path)) as err:
        read_file(path)
    assert message in str(err.value)
