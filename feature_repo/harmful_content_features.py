"""Harmful content features: the author's history and followers, and a post's engagement and reports.

The author is the shared ``user`` entity. Report and engagement rows are stamped with the moment they
became known, so a training join as of a post's scoring moment never counts a later report.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float32, Int64
from user_features import data_path, user, user_profile

post = Entity(name="post", join_keys=["post_id"], value_type=ValueType.INT64, description="A post on the platform.")


def _source(name: str) -> FileSource:
    return FileSource(name=f"harmful_content_{name}_source", path=data_path("harmful_content", f"{name}.parquet"),
                      timestamp_field="event_timestamp")


author_history = FeatureView(
    name="author_history",
    entities=[user],
    ttl=timedelta(days=365),
    schema=[Field(name="author_posts", dtype=Int64), Field(name="author_violation_rate", dtype=Float32)],
    source=_source("author_history"),
    description="The author's posts so far and the smoothed share found harmful (prior violations).",
)

author_profile = FeatureView(
    name="author_profile",
    entities=[user],
    ttl=timedelta(days=365),
    schema=[Field(name="author_followers", dtype=Int64)],
    source=_source("author_profile"),
    description="Followers of the author as of their latest post.",
)

post_engagement = FeatureView(
    name="post_engagement",
    entities=[post],
    ttl=timedelta(days=30),
    schema=[Field(name="views", dtype=Int64), Field(name="likes", dtype=Int64), Field(name="comments", dtype=Int64)],
    source=_source("post_engagement"),
    description="Views, likes and comments when the post was scored.",
)

post_reports = FeatureView(
    name="post_reports",
    entities=[post],
    ttl=timedelta(days=30),
    schema=[Field(name="post_reports", dtype=Int64)],
    source=_source("post_reports"),
    description="User reports of the post so far (noisy, biased): one row per report.",
)

harmful_content_v1 = FeatureService(
    name="harmful_content_v1",
    features=[user_profile, author_history, author_profile, post_engagement, post_reports],
    description="Everything the harmful content model reads beside the post itself; training and serving.",
)
