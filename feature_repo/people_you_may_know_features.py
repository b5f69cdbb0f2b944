"""People-you-may-know features: the node features of the social graph, per user and point in time.

The GNN reads them for every user as of a snapshot (degree and requests sent so far, the user's city,
school and workplace then, when they signed up) beside the shared profile; pair features (mutual
friends, Adamic-Adar, same school) are computed from the graph and these groups. Counts never expire
(``ttl=0``): a daily snapshot holds until the next one.
"""

from datetime import timedelta

from feast import FeatureService, FeatureView, Field, FileSource
from feast.types import Float64, Int64, String
from user_features import data_path, user, user_profile


def _view(name: str, fields: list[Field], description: str) -> FeatureView:
    source = FileSource(name=f"people_you_may_know_{name}_source",
                        path=data_path("people_you_may_know", f"{name}.parquet"), timestamp_field="event_timestamp")
    return FeatureView(name=name, entities=[user], ttl=timedelta(0), schema=fields, source=source,
                       description=description)


pymk_degree = _view("pymk_degree", [Field(name="degree", dtype=Int64)], "Friends so far.")
pymk_requests = _view("pymk_requests", [Field(name="requests_sent", dtype=Int64)],
                      "Friend requests sent so far, accepted or not: how actively the user looks for people.")
pymk_groups = _view("pymk_groups", [
    Field(name="city", dtype=String), Field(name="school_id", dtype=Int64), Field(name="workplace_id", dtype=Int64),
    Field(name="signup_s", dtype=Float64)],
    "City, school and workplace (-1 none) since they became true, and the signup time (unix seconds).")

people_you_may_know_v1 = FeatureService(
    name="people_you_may_know_v1",
    features=[user_profile[["age", "gender"]], pymk_degree, pymk_requests, pymk_groups],
    description="The node features of the link-prediction model; training, the batch step and serving use it.",
)
