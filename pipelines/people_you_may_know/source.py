"""Where people-you-may-know data comes from: the simulator one window at a time, or a file of edges.

An edges file (CSV or Parquet) has one row per connection: ``src``, ``dst`` (integer user ids) and
``timestamp`` (ISO-8601, a datetime or unix seconds). An undirected friendship is the first time a pair
appears in either direction; later repeats and self edges (``src == dst``) are dropped and counted (the
counts are logged and kept in the model's lineage). An optional nodes file has ``user_id`` and any of
``age``, ``gender`` (f/m/u), ``country``, ``city``, ``school_id``, ``workplace_id``; what it does not give is
explicitly unknown (null age, ``"unknown"``, group -1). A file carries no friend requests, so that table
is empty and no pair is blocked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.case import Run
from pipelines.core.files import UNKNOWN, empty, ids, read_table, require, timestamps, users_from_log
from pipelines.core.io import write_json
from pipelines.people_you_may_know.schema import FRIEND_REQUESTS
from pipelines.world.people import PeopleWorld
from pipelines.world.population import SCALES

LOG = logging.getLogger("casebook.people_you_may_know")
EDGE_COLUMNS = ("src", "dst", "timestamp")
NODE_COLUMNS = ("age", "gender", "country", "city", "school_id", "workplace_id")
EDGE_COUNTS = "edges_file.json"
"""The file source's counts (rows read, self edges, repeats), under the case's work folder."""


def world(run: Run) -> PeopleWorld:
    return PeopleWorld(seed=run.params.seed, scale=SCALES[run.params.scale])


def simulate(run: Run, start_day: int, n_days: int, drift: float = 0.0) -> dict[str, pd.DataFrame]:
    """Tables of one simulated window: the friendships and requests made in it."""
    return world(run).window(start_day, n_days, drift)


def read_files(run: Run, files: Mapping[str, Path]) -> dict[str, pd.DataFrame]:
    nodes = files.get("nodes")
    tables, counts = read_edges(Path(files["edges"]), Path(nodes) if nodes else None)
    write_json(counts, run.work(EDGE_COUNTS))
    return tables


def read_edges(path: Path, nodes_path: Path | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """The tables of an edges file (and an optional nodes file), and what was dropped from it."""
    raw = read_table(path, "edges")
    require(raw, path, "edges", EDGE_COLUMNS)
    src, dst = ids(raw["src"], path, "src"), ids(raw["dst"], path, "dst")
    at = timestamps(raw["timestamp"], path, "timestamp")
    if src.isna().any() or dst.isna().any() or at.isna().any():
        raise ValueError(f"{path}: {int((src.isna() | dst.isna() | at.isna()).sum())} rows lack src, dst or "
                         f"timestamp; every edge needs all three")
    edges = pd.DataFrame({"user_id": np.minimum(src, dst), "friend_id": np.maximum(src, dst), "created_ts": at})
    self_edges = edges["user_id"] == edges["friend_id"]
    edges = edges[~self_edges].sort_values("created_ts", kind="stable")
    first = edges.drop_duplicates(["user_id", "friend_id"], keep="first").reset_index(drop=True)
    counts = {"rows": len(raw), "self_edges": int(self_edges.sum()), "repeated_edges": len(edges) - len(first),
              "friendships": len(first)}
    if not len(first):
        raise ValueError(f"{path}: no edge is left once self edges are dropped; a graph needs two users")
    LOG.warning("edges file %s: %d rows, %d self edges and %d repeats dropped, %d friendships", path,
                counts["rows"], counts["self_edges"], counts["repeated_edges"], counts["friendships"])
    seen = pd.DataFrame({"user_id": pd.concat([first["user_id"], first["friend_id"]], ignore_index=True),
                         "event_timestamp": pd.concat([first["created_ts"]] * 2, ignore_index=True)})
    users = users_from_log(seen)
    groups = pd.DataFrame({"user_id": users["user_id"], "since_ts": users["signup_ts"], "city": UNKNOWN,
                           "school_id": np.int64(-1), "workplace_id": np.int64(-1)})
    if nodes_path is not None:
        users, groups = _with_nodes(users, groups, nodes_path)
    return ({"users": users, "affiliations": groups, "friendships": first,
             "friend_requests": empty(FRIEND_REQUESTS)}, counts)


def _with_nodes(users: pd.DataFrame, groups: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The nodes file's attributes over the users the edges name; a node without edges is not a user."""
    nodes = read_table(path, "nodes")
    require(nodes, path, "nodes", ("user_id",))
    unknown = sorted(set(nodes.columns) - {"user_id", *NODE_COLUMNS})
    if unknown:
        raise ValueError(f"nodes file {path} has unknown column(s) {', '.join(unknown)}; it may have user_id and "
                         f"{', '.join(NODE_COLUMNS)}")
    if nodes["user_id"].isna().any():
        raise ValueError(f"nodes file {path}: {int(nodes['user_id'].isna().sum())} rows have no user_id; every row "
                         f"describes one user")
    nodes = nodes.assign(user_id=ids(nodes["user_id"], path, "user_id"))
    if nodes["user_id"].duplicated().any():
        raise ValueError(f"nodes file {path}: user_id repeats ({int(nodes['user_id'].duplicated().sum())} rows); "
                         f"give one row per user")
    attrs = users[["user_id"]].merge(nodes, on="user_id", how="left")
    if "age" in nodes:
        users = users.assign(age=ids(attrs["age"], path, "age").astype("Int64").array)
    for column in ("gender", "country"):
        if column in nodes:
            users[column] = attrs[column].fillna("u" if column == "gender" else UNKNOWN).astype(str).to_numpy()
    if "city" in nodes:
        groups["city"] = attrs["city"].fillna(UNKNOWN).astype(str).to_numpy()
    for column in ("school_id", "workplace_id"):
        if column in nodes:
            groups[column] = ids(attrs[column], path, column).fillna(-1).astype(np.int64).to_numpy()
    return users, groups
