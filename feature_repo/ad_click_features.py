"""Ad click prediction features: ad profile and point-in-time historical CTR per ad, user and user-ad.

Each CTR row is a daily snapshot of counts over labels that had matured (the attribution window had
closed) by its ``event_timestamp``, so a training join never sees a click from the future.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float32, Int64, String
from user_features import data_path, user, user_profile

ad = Entity(name="ad", join_keys=["ad_id"], value_type=ValueType.INT64, description="An ad creative.")


def _source(name: str) -> FileSource:
    return FileSource(name=f"ad_click_{name}_source", path=data_path("ad_click", f"{name}.parquet"),
                      timestamp_field="event_timestamp")


ad_profile = FeatureView(
    name="ad_profile",
    entities=[ad],
    ttl=timedelta(0),
    schema=[
        Field(name="advertiser_id", dtype=Int64),
        Field(name="campaign_id", dtype=Int64),
        Field(name="category", dtype=String),
        Field(name="target_country", dtype=String),
        Field(name="min_age", dtype=Int64),
        Field(name="max_age", dtype=Int64),
    ],
    source=_source("ad_profile"),
    description="Static ad attributes and targeting, valid from the ad's creation.",
)

ad_ctr = FeatureView(
    name="ad_ctr",
    entities=[ad],
    ttl=timedelta(days=60),
    schema=[
        Field(name="ad_impressions", dtype=Int64),
        Field(name="ad_ctr", dtype=Float32),
    ],
    source=_source("ad_ctr"),
    description="Matured impressions and smoothed CTR of the ad up to the snapshot.",
)

user_ctr = FeatureView(
    name="user_ctr",
    entities=[user],
    ttl=timedelta(days=60),
    schema=[
        Field(name="user_impressions", dtype=Int64),
        Field(name="user_ctr", dtype=Float32),
    ],
    source=_source("user_ctr"),
    description="The user's matured ad impressions and smoothed CTR up to the snapshot.",
)

user_ad_ctr = FeatureView(
    name="user_ad_ctr",
    entities=[user, ad],
    ttl=timedelta(days=60),
    schema=[
        Field(name="user_ad_impressions", dtype=Int64),
        Field(name="user_ad_ctr", dtype=Float32),
    ],
    source=_source("user_ad_ctr"),
    description="How often this user saw and clicked this ad before (fatigue and affinity).",
)

ad_click_v1 = FeatureService(
    name="ad_click_v1",
    features=[user_profile, ad_profile, ad_ctr, user_ctr, user_ad_ctr],
    description="Everything the ad click model reads; training and serving both use this service.",
)
