"""Validated people-you-may-know tables -> Feast feature tables (the node features of the graph).

Counts are daily snapshots of cumulative counts (``count_snapshots``): a join as of a snapshot's midnight
sees the friendships and requests made before it, the same graph the model's message passing runs on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.core.case import Run
from pipelines.core.features import count_snapshots, unix_seconds

SERVICE = "people_you_may_know_v1"
NODE_NUMERIC = ["age", "degree", "requests_sent", "signup_s"]
NODE_GROUPS = ["city", "school_id", "workplace_id"]
"""Read from Feast per user: numeric inputs of the GNN, and the groups pair features compare."""


def build(run: Run) -> dict[str, pd.DataFrame]:
    """Every feature table from all validated data (the core writes them and applies the Feast views)."""
    return tables(run.validated("friendships"), run.validated("friend_requests"), run.validated("affiliations"),
                  run.validated("users"))


def tables(friendships: pd.DataFrame, requests: pd.DataFrame, affiliations: pd.DataFrame, users: pd.DataFrame
           ) -> dict[str, pd.DataFrame]:
    ends = pd.concat([friendships[["user_id", "created_ts"]],
                      friendships.rename(columns={"user_id": "_", "friend_id": "user_id"})[["user_id", "created_ts"]]],
                     ignore_index=True)
    sent = requests.rename(columns={"sender_id": "user_id"})
    signup = users.set_index("user_id")["signup_ts"]
    groups = affiliations.rename(columns={"since_ts": "event_timestamp"}).reindex(
        columns=["user_id", "event_timestamp", *NODE_GROUPS])
    groups["workplace_id"] = groups["workplace_id"].fillna(-1).astype(np.int64)  # an optional column
    groups["signup_s"] = unix_seconds(signup.reindex(groups["user_id"]).fillna(groups["event_timestamp"].min()))
    return {"pymk_degree": count_snapshots(ends, ["user_id"], ends["created_ts"], "degree"),
            "pymk_requests": count_snapshots(sent, ["user_id"], sent["event_timestamp"], "requests_sent")
            .astype({"user_id": np.int64, "requests_sent": np.int64}),
            "pymk_groups": groups}
