"""A human review queue: a persistent SQLite table a service fills and a reviewer reads and labels.

An item is keyed by its id: enqueueing the same item again (a client's retry, a second worker) is a
no-op, so an item lands exactly once. A reviewer's labels (class -> 0/1) are written to the table and
to ``<case>.labels.parquet`` beside it, the file the case's next training run reads: training depends
on the labels, not on every new item queued.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.core.settings import Paths

SCHEMA = """
CREATE TABLE IF NOT EXISTS review_queue (
    item_id INTEGER PRIMARY KEY,
    queued_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    scores TEXT NOT NULL,
    payload TEXT NOT NULL,
    labels TEXT,
    labeled_at TEXT
)"""


def queue_file(paths: Paths, case: str) -> Path:
    return paths.data / "review" / f"{case}.sqlite"


def labels_file(paths: Paths, case: str) -> Path:
    """The reviewers' labels as a table: what the case's train step reads (and is keyed on)."""
    return paths.data / "review" / f"{case}.labels.parquet"


class ReviewQueue:
    """One case's queue. Safe for several service workers: WAL journal, a busy timeout, one statement each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.labels_path = path.with_name(f"{path.stem}.labels.parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    @classmethod
    def of(cls, paths: Paths, case: str) -> ReviewQueue:
        return cls(queue_file(paths, case))

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10.0)
        try:
            with db:  # commit on success, roll back on error
                yield db
        finally:
            db.close()

    def enqueue(self, item_id: int, reason: str, scores: Mapping[str, float], payload: Mapping[str, Any]) -> bool:
        """Queue an item once; True if this call added it, False if it was already there."""
        now = datetime.now(UTC).isoformat()
        with self._db() as db:
            cur = db.execute("INSERT OR IGNORE INTO review_queue (item_id, queued_at, reason, scores, payload) "
                             "VALUES (?, ?, ?, ?, ?)", (int(item_id), now, reason, json.dumps(dict(scores)),
                                                        json.dumps(dict(payload))))
            return cur.rowcount == 1

    def items(self, status: str = "pending", limit: int | None = None) -> list[dict[str, Any]]:
        """Items by queue order: ``pending`` (not labeled yet), ``labeled`` or ``all``."""
        where = {"pending": "WHERE labels IS NULL", "labeled": "WHERE labels IS NOT NULL", "all": ""}
        if status not in where:
            raise ValueError(f"unknown status {status!r}; choose pending, labeled or all")
        sql = f"SELECT * FROM review_queue {where[status]} ORDER BY queued_at, item_id"
        with self._db() as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ()).fetchall()
        return [{**dict(r), "scores": json.loads(r["scores"]), "payload": json.loads(r["payload"]),
                 "labels": json.loads(r["labels"]) if r["labels"] else None} for r in rows]

    def label(self, item_id: int, labels: Mapping[str, int]) -> dict[str, Any]:
        """Record a reviewer's 0/1 per class (only the classes the item was scored for); refreshes the file."""
        with self._db() as db:
            row = db.execute("SELECT scores FROM review_queue WHERE item_id = ?", (int(item_id),)).fetchone()
            if row is None:
                raise LookupError(f"item {item_id} is not in the review queue {self.path}")
            known = set(json.loads(row[0]))
            bad = sorted(set(labels) - known)
            if bad or not labels:
                raise ValueError(f"labels must name classes the item was scored for ({', '.join(sorted(known))}) "
                                 f"as CLASS=0 or CLASS=1; got {dict(labels) or 'none'}")
            if any(v not in (0, 1) for v in labels.values()):
                raise ValueError(f"a label is 0 or 1, got {dict(labels)}")
            db.execute("UPDATE review_queue SET labels = ?, labeled_at = ? WHERE item_id = ?",
                       (json.dumps(dict(labels)), datetime.now(UTC).isoformat(), int(item_id)))
        self.write_labels(self.labels_path)
        return next(i for i in self.items("labeled") if i["item_id"] == int(item_id))

    def labels_frame(self) -> Any:
        """One row per labeled item and class: item_id, class, label, labeled_at (UTC)."""
        import pandas as pd

        rows = [{"item_id": i["item_id"], "class": c, "label": int(v), "labeled_at": i["labeled_at"]}
                for i in self.items("labeled") for c, v in sorted(i["labels"].items())]
        frame = pd.DataFrame(rows, columns=["item_id", "class", "label", "labeled_at"])
        frame["labeled_at"] = pd.to_datetime(frame["labeled_at"], utc=True, format="ISO8601")
        return frame.astype({"item_id": "int64", "label": "int64", "class": "str"})

    def write_labels(self, target: Path) -> Path:
        from pipelines.core.io import write_parquet

        return write_parquet(self.labels_frame(), target)

    def export(self, target: Path) -> Path:
        """Every item (queued and labeled) as CSV or Parquet, by the target's suffix."""
        import pandas as pd

        from pipelines.core.io import atomic_path

        frame = pd.DataFrame([{**{k: v for k, v in i.items() if k not in ("scores", "payload", "labels")},
                               "scores": json.dumps(i["scores"]), "payload": json.dumps(i["payload"]),
                               "labels": json.dumps(i["labels"]) if i["labels"] else None}
                              for i in self.items("all")],
                             columns=["item_id", "queued_at", "reason", "scores", "payload", "labels", "labeled_at"])
        if target.suffix.lower() not in (".csv", ".parquet"):
            raise ValueError(f"export to a .csv or .parquet file, got {target}")
        with atomic_path(target) as tmp:
            if target.suffix.lower() == ".csv":
                frame.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)
        return target
