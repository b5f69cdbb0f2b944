"""Data contracts of the video tables; the GX suites are derived from these.

The same contracts hold for the simulator and for real files. What a real log cannot know is either an
optional column (absent from a file batch: the engagement details and the oracle probability, the
creator) or an explicit unknown (``"unknown"`` strings, NaN duration), never a made-up value.
"""

from pipelines.core.validation import Column, TableSchema
from pipelines.world.schema import USERS

VIDEOS = TableSchema(
    name="videos",
    key=("video_id",),
    columns=(
        Column("video_id", "int", min=1),
        Column("upload_ts", "timestamp"),
        Column("creator_id", "int", min=1),
        Column("duration_s", "float", nullable=True, min=5, max=7200),
        Column("language", "str"),
        Column("category", "str"),  # the simulator's are world.video.CATEGORIES; a real catalogue has its own
        Column("tags", "str"),  # "|"-joined, lower case
        Column("title", "str"),
    ),
    optional=("creator_id",),
)

INTERACTIONS = TableSchema(
    name="interactions",
    key=("event_id",),
    columns=(
        Column("event_id", "int", min=0),
        Column("event_timestamp", "timestamp"),
        Column("user_id", "int", min=1),
        Column("video_id", "int", min=1),
        Column("position", "int", min=1, max=50),
        Column("clicked", "int", min=0, max=1),
        Column("watch_fraction", "float", min=0, max=1),
        Column("liked", "int", min=0, max=1),
        Column("disliked", "int", min=0, max=1),
        Column("positive", "int", min=0, max=1),  # the label: clicked, watched half or liked, not disliked
        Column("p_positive", "float", min=0, max=1),
    ),
    # A real log has only who, what, when and whether it was positive.
    optional=("position", "clicked", "watch_fraction", "liked", "disliked", "p_positive"),
)

TABLES = (USERS, VIDEOS, INTERACTIONS)
