"""Validated video tables -> Feast feature tables (one function per feature view)."""

from __future__ import annotations

import pandas as pd

from pipelines.core.case import Run
from pipelines.core.features import rate_snapshots

SERVICE = "video_recommendation_v1"
RANKER_NUMERIC = ["age", "duration_s", "video_impressions", "video_positive_rate", "viewer_impressions",
                  "viewer_positive_rate", "viewer_click_rate", "user_category_impressions",
                  "user_category_positive_rate", "user_category_click_rate"]
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
    the next midnight on. The user views also carry the click rate: clicks are ~3x as frequent as
    positives, so they tell a user's taste for a topic from fewer impressions (a log without clicks
    counts its positives as clicks).
    """
    events = interactions.merge(videos[["video_id", "category"]], on="video_id", how="left")
    events["category"] = events["category"].fillna("unknown")
    if "clicked" not in events:
        events["clicked"] = events["positive"]
    known, click_prior = events["event_timestamp"], float(events["clicked"].mean())

    def rates(keys: list[str], prefix: str) -> pd.DataFrame:
        out = rate_snapshots(events, keys, "positive", known, prefix, prior, rate="positive_rate")
        clicks = rate_snapshots(events, keys, "clicked", known, prefix, click_prior, rate="click_rate")
        return out.assign(**{f"{prefix}_click_rate": clicks[f"{prefix}_click_rate"].to_numpy()})

    return {
        "video_engagement": rate_snapshots(events, ["video_id"], "positive", known, "video", prior,
                                           rate="positive_rate"),
        "user_video_engagement": rates(["user_id"], "viewer"),
        "user_category_engagement": rates(["user_id", "category"], "user_category"),
    }
