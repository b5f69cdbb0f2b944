"""Visual search features: image metadata that re-ranking reads online for every retrieved image.

The image itself is not a feature: the encoder reads pixels, the index holds embeddings. What Feast
serves is what decides whether a similar image may be shown: its owner (blocked owners are filtered), its
privacy flag (private images are dropped), its near-duplicate group (re-uploads collapse to one) and its
upload time. No user entity: this case has no users in its model.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Int64
from user_features import data_path

image = Entity(name="image", join_keys=["image_id"], value_type=ValueType.INT64,
               description="An uploaded image in the searchable catalog.")

image_metadata = FeatureView(
    name="image_metadata",
    entities=[image],
    ttl=timedelta(0),  # valid from the upload until a newer row replaces it
    schema=[
        Field(name="owner_id", dtype=Int64),
        Field(name="private", dtype=Int64),
        Field(name="dup_group", dtype=Int64),
        Field(name="upload_ts", dtype=Int64, description="seconds since 1970 (UTC)"),
    ],
    source=FileSource(name="visual_search_image_metadata_source",
                      path=data_path("visual_search", "image_metadata.parquet"), timestamp_field="event_timestamp"),
    description="Owner, privacy flag, near-duplicate group and upload time of each catalog image.",
)

visual_search_v1 = FeatureService(
    name="visual_search_v1",
    features=[image_metadata],
    description="What re-ranking reads for each retrieved image, online in the service and offline in evaluate.",
)
