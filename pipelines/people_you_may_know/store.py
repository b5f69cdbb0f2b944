"""The table the service reads: precomputed lists and the graph they were computed on, in SQLite.

The batch step writes one *list* per model (``list_id``): the top k per active user, and the friendships
and blocked pairs of the snapshot it scored, so the service's on-demand fallback (friends of friends +
Adamic-Adar) sees the same graph. A write is one transaction: a reader sees a list whole or not at all.
The newest ``keep`` lists stay, and the serving champion's always (``protect``); older ones are dropped.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

CHUNK = 900

SCHEMA = """
CREATE TABLE IF NOT EXISTS lists (list_id TEXT PRIMARY KEY, created_s REAL, as_of TEXT, users INTEGER);
CREATE TABLE IF NOT EXISTS recommendations (list_id TEXT, user_id INTEGER, rank INTEGER, candidate_id INTEGER,
    score REAL, mutual_friends INTEGER, PRIMARY KEY (list_id, user_id, rank)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS friends (list_id TEXT, user_id INTEGER, friend_id INTEGER,
    PRIMARY KEY (list_id, user_id, friend_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocked (list_id TEXT, user_id INTEGER, other_id INTEGER,
    PRIMARY KEY (list_id, user_id, other_id)) WITHOUT ROWID;
"""


class ListStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _db(self, create: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection; ``create`` (the writer) makes the file and its tables, readers run no DDL."""
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30.0)
        try:
            if create:
                db.executescript(SCHEMA)
            with db:
                yield db
        finally:
            db.close()

    def write(self, list_id: str, as_of: pd.Timestamp, lists: pd.DataFrame, friendships: pd.DataFrame,
              blocked: frozenset[tuple[int, int]], keep: int, protect: frozenset[str] = frozenset()) -> None:
        """One list (columns user_id, rank, candidate_id, score, mutual_friends) and its graph, atomically."""
        both = pd.concat([friendships[["user_id", "friend_id"]],
                          friendships.rename(columns={"user_id": "friend_id", "friend_id": "user_id"})[
                              ["user_id", "friend_id"]]], ignore_index=True).drop_duplicates()
        pairs = np.array(sorted(blocked), dtype=np.int64).reshape(-1, 2)
        with self._db(create=True) as db:
            db.execute("INSERT INTO lists VALUES (?, ?, ?, ?)",
                       (list_id, time.time(), str(as_of), int(lists["user_id"].nunique())))
            db.executemany("INSERT INTO recommendations VALUES (?, ?, ?, ?, ?, ?)",
                           ((list_id, int(r.user_id), int(r.rank), int(r.candidate_id), float(r.score),
                             int(r.mutual_friends)) for r in lists.itertuples(index=False)))
            db.executemany("INSERT INTO friends VALUES (?, ?, ?)",
                           ((list_id, int(a), int(b)) for a, b in both.itertuples(index=False)))
            db.executemany("INSERT OR IGNORE INTO blocked VALUES (?, ?, ?)",
                           ((list_id, int(a), int(b)) for a, b in np.r_[pairs, pairs[:, ::-1]]))
            old = [r[0] for r in db.execute("SELECT list_id FROM lists ORDER BY created_s DESC LIMIT -1 OFFSET ?",
                                            (keep,))]
            for stale in set(old) - protect:
                for table in ("recommendations", "friends", "blocked", "lists"):
                    db.execute(f"DELETE FROM {table} WHERE list_id = ?", (stale,))

    def has(self, list_id: str) -> bool:
        if not self.path.exists():  # connecting would create an empty file
            return False
        with self._db() as db:
            return db.execute("SELECT 1 FROM lists WHERE list_id = ?", (list_id,)).fetchone() is not None

    def recommendations(self, list_id: str, user_id: int) -> list[tuple[int, float, int]]:
        """(candidate, score, mutual friends) in rank order; empty when the user has no precomputed list."""
        with self._db() as db:
            return db.execute("SELECT candidate_id, score, mutual_friends FROM recommendations WHERE list_id = ? "
                              "AND user_id = ? ORDER BY rank", (list_id, user_id)).fetchall()

    def friends(self, list_id: str, users: list[int]) -> list[tuple[int, int]]:
        """Every (user, friend) edge of the given users in the list's snapshot.

        Read in chunks of ``CHUNK`` ids: SQLite caps the number of bound parameters of one statement.
        """
        out: list[tuple[int, int]] = []
        with self._db() as db:
            for i in range(0, len(users), CHUNK):
                part = users[i:i + CHUNK]
                marks = ",".join("?" * len(part))
                out += db.execute(f"SELECT user_id, friend_id FROM friends WHERE list_id = ? AND user_id IN ({marks})",
                                  (list_id, *part)).fetchall()
        return out

    def blocked(self, list_id: str, user_id: int) -> set[int]:
        with self._db() as db:
            return {r[0] for r in db.execute("SELECT other_id FROM blocked WHERE list_id = ? AND user_id = ?",
                                             (list_id, user_id))}

    def users_without_list(self, list_id: str, limit: int) -> list[int]:
        """Users with friends in the snapshot but no precomputed list (the fallback's), most friends first."""
        with self._db() as db:
            return [int(r[0]) for r in db.execute(
                "SELECT f.user_id FROM friends f WHERE f.list_id = ? AND NOT EXISTS (SELECT 1 FROM recommendations r "
                "WHERE r.list_id = f.list_id AND r.user_id = f.user_id) GROUP BY f.user_id ORDER BY COUNT(*) DESC "
                "LIMIT ?", (list_id, limit))]

    def users_with_list(self, list_id: str, limit: int) -> list[int]:
        with self._db() as db:
            return [int(r[0]) for r in db.execute(
                "SELECT DISTINCT user_id FROM recommendations WHERE list_id = ? LIMIT ?", (list_id, limit))]
