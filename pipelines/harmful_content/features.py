"""Validated harmful-content tables -> Feast feature tables (one function per feature view).

Every table is point-in-time by construction: a row's ``event_timestamp`` is when its value became
known, so a training join as of a post's scoring moment sees only reports, engagement and author
history from before that moment.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.core.case import Run
from pipelines.core.features import rate_snapshots

SERVICE = "harmful_content_v1"
REVIEW_DELAY = pd.Timedelta(days=1)
"""A post's verdict (a human's, or its reports') counts in its author's history a day after posting."""
VIOLATION_PRIOR = 0.05


def build(run: Run) -> dict[str, pd.DataFrame]:
    """Every feature table from all validated data (the core writes them and applies the Feast views)."""
    from pipelines.harmful_content.labels import known_labels

    posts, reports = run.validated("posts"), run.validated("reports")
    known = known_labels(run.validated("labels"), reports)
    return {"author_history": author_history(posts, known), "author_profile": author_profile(posts),
            "post_engagement": post_engagement(posts), "post_reports": post_reports(reports)}


def author_history(posts: pd.DataFrame, known: pd.DataFrame) -> pd.DataFrame:
    """Daily snapshots of the author's posts so far and the smoothed share found harmful (prior violations)."""
    violated = known.max(axis=1).rename("violation") if len(known.columns) else pd.Series(dtype=np.int64)
    events = posts[["post_id", "author_id", "created_at"]].merge(violated, left_on="post_id", right_index=True,
                                                                 how="left").fillna({"violation": 0})
    events = events.rename(columns={"author_id": "user_id"})
    out = rate_snapshots(events, ["user_id"], "violation", events["created_at"] + REVIEW_DELAY, "author",
                         VIOLATION_PRIOR, rate="violation_rate")
    return out.rename(columns={"author_impressions": "author_posts"})


def author_profile(posts: pd.DataFrame) -> pd.DataFrame:
    """The author's follower count as logged with each of their posts (unknown: 0 rows, null online)."""
    if "followers" not in posts:
        return pd.DataFrame({"user_id": pd.Series(dtype=np.int64), "author_followers": pd.Series(dtype=np.int64),
                             "event_timestamp": pd.Series(dtype="datetime64[ns, UTC]")})
    out = posts[["author_id", "created_at", "followers"]].rename(
        columns={"author_id": "user_id", "created_at": "event_timestamp", "followers": "author_followers"})
    return out.drop_duplicates(["user_id", "event_timestamp"], keep="last").reset_index(drop=True)


def post_engagement(posts: pd.DataFrame) -> pd.DataFrame:
    """Views, likes and comments at the moment the platform scored the post (0 where a file has none)."""
    out = pd.DataFrame({"post_id": posts["post_id"], "event_timestamp": posts["scored_at"]})
    for c in ("views", "likes", "comments"):
        out[c] = posts[c].astype(np.int64) if c in posts else np.zeros(len(posts), np.int64)
    return out


def post_reports(reports: pd.DataFrame) -> pd.DataFrame:
    """The post's report count after each report: a join as of t counts only reports made before t."""
    ordered = reports.sort_values(["post_id", "reported_at"], kind="stable")
    return pd.DataFrame({"post_id": ordered["post_id"].astype(np.int64),
                         "event_timestamp": ordered["reported_at"],
                         "post_reports": (ordered.groupby("post_id").cumcount() + 1).astype(np.int64)}
                        ).reset_index(drop=True)
