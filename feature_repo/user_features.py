"""The shared ``user`` entity and user profile view: defined once, used by every case study with users.

Feast imports every module of this folder by its top-level name (``feast apply`` runs here), so case
modules import from ``user_features`` directly.
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Int64, String


def data_path(*parts: str) -> str:
    """Absolute path of a feature table; ``CASEBOOK_HOME`` moves all data (tests use a temp dir)."""
    home = Path(os.environ.get("CASEBOOK_HOME", Path(__file__).resolve().parents[1]))
    return str(home.resolve() / "data" / "features" / Path(*parts))


user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64,
              description="A member of the simulated (or your) platform.")

user_profile_source = FileSource(
    name="user_profile_source",
    # One file per case study (each writes its own users), read as one table.
    path=data_path("shared", "user_profile", "*.parquet"),
    timestamp_field="event_timestamp",
)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=timedelta(0),  # a profile never expires; a newer row replaces it
    schema=[
        Field(name="age", dtype=Int64),
        Field(name="gender", dtype=String),
        Field(name="country", dtype=String),
        Field(name="language", dtype=String),
    ],
    source=user_profile_source,
    description="Demographics as of signup (or the last profile change).",
)
