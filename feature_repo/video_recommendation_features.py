"""Video recommendation features: video profile, and point-in-time engagement per video, user and
user-category (how much this user liked this topic so far), for the ranking stage.

Engagement rows are daily snapshots of cumulative counts: a join as of time t only sees interactions
before the midnight at or before t, so training never reads the future.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float32, Float64, Int64, String
from user_features import data_path, user, user_profile

video = Entity(name="video", join_keys=["video_id"], value_type=ValueType.INT64, description="An uploaded video.")
video_category = Entity(name="video_category", join_keys=["category"], value_type=ValueType.STRING,
                        description="A video topic; the key of a user's taste history.")


def _source(name: str) -> FileSource:
    return FileSource(name=f"video_recommendation_{name}_source",
                      path=data_path("video_recommendation", f"{name}.parquet"), timestamp_field="event_timestamp")


def _engagement(prefix: str, clicks: bool = False) -> list[Field]:
    rates = ["positive_rate", "click_rate"] if clicks else ["positive_rate"]
    return [Field(name=f"{prefix}_impressions", dtype=Int64),
            *(Field(name=f"{prefix}_{rate}", dtype=Float32) for rate in rates)]


video_profile = FeatureView(
    name="video_profile",
    entities=[video],
    ttl=timedelta(0),
    schema=[
        Field(name="creator_id", dtype=Int64),
        Field(name="duration_s", dtype=Float64),
        Field(name="video_language", dtype=String),
        Field(name="video_category", dtype=String),
    ],
    source=_source("video_profile"),
    description="Static video attributes, valid from the upload.",
)

video_engagement = FeatureView(
    name="video_engagement",
    entities=[video],
    ttl=timedelta(days=60),
    schema=_engagement("video"),
    source=_source("video_engagement"),
    description="Impressions and smoothed positive-engagement rate of the video so far.",
)

user_video_engagement = FeatureView(
    name="user_video_engagement",
    entities=[user],
    ttl=timedelta(days=60),
    schema=_engagement("viewer", clicks=True),
    source=_source("user_video_engagement"),
    description="How many homepage videos the user saw and how often they engaged.",
)

user_category_engagement = FeatureView(
    name="user_category_engagement",
    entities=[user, video_category],
    ttl=timedelta(days=60),
    schema=_engagement("user_category", clicks=True),
    source=_source("user_category_engagement"),
    description="The user's history with the candidate's topic: their taste, learned from behaviour.",
)

video_recommendation_v1 = FeatureService(
    name="video_recommendation_v1",
    features=[user_profile, video_profile, video_engagement, user_video_engagement, user_category_engagement],
    description="Everything the ranking model reads; training and serving both use this service.",
)
