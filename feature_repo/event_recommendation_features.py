"""Event recommendation features: static event attributes, point-in-time engagement of events, hosts and
users, the user's category and host history, friends registered and invitations (batch views), and the
request-time features (distance, hours until start, day/hour fit, price against the user's history) as an
on-demand view over a request source, so training and serving run the same transformation.

Engagement rows are daily snapshots of cumulative counts: a join as of time t only sees what happened
before the midnight at or before t.
"""

from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float32, Float64, Int64, String
from user_features import data_path, user, user_profile

event = Entity(name="event", join_keys=["event_id"], value_type=ValueType.INT64,
               description="An event; always new (created days before it starts).")
host = Entity(name="host", join_keys=["host_id"], value_type=ValueType.INT64, description="Who runs events.")
event_category = Entity(name="event_category", join_keys=["category"], value_type=ValueType.STRING,
                        description="An event topic; the key of a user's taste history.")


def _source(name: str) -> FileSource:
    return FileSource(name=f"event_recommendation_{name}_source",
                      path=data_path("event_recommendation", f"{name}.parquet"), timestamp_field="event_timestamp")


def _view(name: str, entities: list[Entity], fields: list[Field], description: str,
          ttl: timedelta = timedelta(days=60)) -> FeatureView:
    return FeatureView(name=name, entities=entities, ttl=ttl, schema=fields, source=_source(name),
                       description=description)


event_profile = _view("event_profile", [event], [
    Field(name="price", dtype=Float64),
    Field(name="capacity", dtype=Int64), Field(name="venue_lat", dtype=Float64),
    Field(name="venue_lon", dtype=Float64), Field(name="start_s", dtype=Float64),
    Field(name="start_slot", dtype=Int64)], "Static attributes, valid from the event's creation.", timedelta(0))
event_registrations = _view("event_registrations", [event], [Field(name="event_registrations", dtype=Int64)],
                            "Registrations so far: popularity, and whether the event is full.")
event_engagement = _view("event_engagement", [event], [
    Field(name="event_impressions", dtype=Int64), Field(name="event_register_rate", dtype=Float32)],
    "Feed impressions of the event so far and its smoothed registration rate.")
host_engagement = _view("host_engagement", [host], [
    Field(name="host_impressions", dtype=Int64), Field(name="host_register_rate", dtype=Float32)],
    "The host's track record over all their events: what a new event inherits.")
user_history = _view("user_history", [user], [
    Field(name="user_impressions", dtype=Int64), Field(name="user_registrations", dtype=Int64),
    Field(name="user_register_rate", dtype=Float32), Field(name="user_mean_log_price", dtype=Float64),
    *(Field(name=f"slot_share_{i}", dtype=Float64) for i in range(4))],
    "How often the user registers, what they pay (log1p price) and when (share per day/hour slot).")
user_category_history = _view("user_category_history", [user, event_category],
                              [Field(name="user_category_registrations", dtype=Int64)],
                              "The user's registrations in the candidate's category: taste, from behaviour.")
user_host_history = _view("user_host_history", [user, host], [Field(name="user_host_registrations", dtype=Int64)],
                          "The user's registrations with the candidate's host: loyalty.")
user_event_friends = _view("user_event_friends", [user, event], [Field(name="friends_registered", dtype=Int64)],
                           "Friends registered for the event (the shared social graph).")
user_event_invitations = _view("user_event_invitations", [user, event], [Field(name="invitations", dtype=Int64)],
                               "Invitations to the event the user got from friends.")
user_event_registered = _view("user_event_registered", [user, event],
                              [Field(name="registered_before", dtype=Int64)],
                              "Whether the user registered already: the service never recommends it again.")
user_home = _view("user_home", [user], [
    Field(name="city", dtype=String), Field(name="home_lat", dtype=Float64), Field(name="home_lon", dtype=Float64)],
    "Where the user lives: the location a request without one is served for.", timedelta(0))

request_context = RequestSource(name="event_request_context", schema=[
    Field(name="user_lat", dtype=Float64), Field(name="user_lon", dtype=Float64),
    Field(name="request_s", dtype=Float64)])
"""Where the user is and when they ask (unix seconds): only the request knows them."""


@on_demand_feature_view(
    sources=[event_profile, user_history, request_context],
    schema=[Field(name="distance_km", dtype=Float64), Field(name="hours_until_start", dtype=Float64),
            Field(name="day_hour_fit", dtype=Float64), Field(name="price_vs_history", dtype=Float64)],
    description="Request-time features: great-circle distance to the venue, hours until the start, how the "
                "start's day/hour slot fits the user's habits (1 = indifferent) and price against history.",
)
def event_request_features(inputs: pd.DataFrame) -> pd.DataFrame:
    import numpy as np  # inside: Feast serializes the function itself into the registry

    lat1, lat2 = np.radians(inputs["user_lat"].astype(float)), np.radians(inputs["venue_lat"].astype(float))
    dlon = np.radians(inputs["venue_lon"].astype(float) - inputs["user_lon"].astype(float))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin(dlon / 2) ** 2
    slot = inputs["start_slot"].fillna(-1).astype(int).to_numpy()
    shares = inputs[[f"slot_share_{i}" for i in range(4)]].astype(float).to_numpy()
    picked = np.take_along_axis(shares, np.clip(slot, 0, 3)[:, None], axis=1)[:, 0]
    out = pd.DataFrame(index=inputs.index)
    out["distance_km"] = 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    out["hours_until_start"] = (inputs["start_s"].astype(float) - inputs["request_s"].astype(float)) / 3600.0
    out["day_hour_fit"] = np.where(slot >= 0, 4.0 * picked, np.nan)
    out["price_vs_history"] = np.log1p(inputs["price"].astype(float)) - inputs["user_mean_log_price"].astype(float)
    return out


event_recommendation_v1 = FeatureService(
    name="event_recommendation_v1",
    features=[user_profile[["age"]], event_profile, event_registrations, event_engagement, host_engagement,
              user_history, user_category_history, user_host_history, user_event_friends,
              user_event_invitations, user_event_registered, user_home, event_request_features],
    description="Everything the ranker reads and the service filters on; training and serving use this service.",
)
