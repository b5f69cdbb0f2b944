"""Validated video tables -> Feast feature tables (one function per feature view)."""

from __future__ import annotations

import pandas as pd

from pipelines.core.case import Run
from pipelines.core.features import rate_snapshots

SERVICE = "video_recommendation_v1"
RANKER_NUMERIC = ["age", "duration_s", "video_impressions", "video_positive_rate", "viewer_impressions",
                  "viewer_positive_rate", "user_category_impressions", "user_category_positive_rate"]
RANKER_CATEGORICAL = ["gender", "country", "language", "video_language", "video_category"]
"""The ranker's inputs read from Feast; the flow adds request-time ones (generator scores, video age)."""


def build(run: Run) -> dict[str, pd.DataFrame]:
    """Every feature table from all validated data (the core writes them and applies the Feast views)."""
    interactions, videos = run.validated("interactions"), run.validated("videos")
    return {"video_profile": video_profile_table(videos),
            **engagement_tables(interactions, videos, run.params.engagement_prior)}


def video_profile_table(videos: pd.DataFrame) -> pd.DataFrame:
    creator = videos["creator_id"] if "creator_id" in videos else pd.Series(pd.NA, index=videos.index, dtype="Int64")
    return pd.DataFrame({
        "video_id": videos["video_id"], "creator_id": creator, "duration_s": videos["duration_s"],
        "video_language": videos["language"], "video_category": videos["category"],
        "event_timestamp": videos["upload_ts"]})


def engagement_tables(interactions: pd.DataFrame, videos: pd.DataFrame, prior: float) -> dict[str, pd.DataFrame]:
    """Point-in-time positive-engagement counts per video, per user and per (user, video category).

    An interaction's outcome (watch time, like) is known by the end of its session, so it counts from
    the next midnight on.
    """
    events = interactions.merge(videos[["video_id", "category"]], on="video_id", how="left")
    events["category"] = events["category"].fillna("unknown")
    known = events["event_timestamp"]
    return {
        "video_engagement": rate_snapshots(events, ["video_id"], "positive", known, "video", prior,
                                           rate="positive_rate"),
        "user_video_engagement": rate_snapshots(events, ["user_id"], "positive", known, "viewer", prior,
                                                rate="positive_rate"),
        "user_category_engagement": rate_snapshots(events, ["user_id", "category"], "positive", known,
                                                   "user_category", prior, rate="positive_rate"),
    }
