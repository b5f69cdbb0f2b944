"""Data contracts of the harmful-content tables; the GX suites are derived from these.

Labels are long (one row per post and harm class), so the class names are data, not columns: a file
with its own classes passes the same contract as the simulator's four.
"""

from pipelines.core.validation import Column, TableSchema
from pipelines.world.harmful_content import IMAGE_DIM
from pipelines.world.schema import USERS

MAX_TEXT_CHARS = 20_000
"""Longer posts are cut to this at the file reader; the service refuses them (its own, smaller limit)."""
IMAGE_COLUMNS = tuple(f"img_{j:02d}" for j in range(IMAGE_DIM))

POSTS = TableSchema(
    name="posts",
    key=("post_id",),
    columns=(
        Column("post_id", "int", min=0),
        Column("author_id", "int", min=1),
        Column("created_at", "timestamp"),
        Column("scored_at", "timestamp"),
        Column("text", "str"),
        *(Column(c, "float", min=-50, max=50) for c in IMAGE_COLUMNS),
        Column("followers", "int", min=0),
        Column("views", "int", min=0),
        Column("likes", "int", min=0),
        Column("comments", "int", min=0),
    ),
    # a real file may have no image embedding, no follower counts and no engagement
    optional=(*IMAGE_COLUMNS, "followers", "views", "likes", "comments"),
)

REPORTS = TableSchema(
    name="reports",
    key=("report_id",),
    columns=(
        Column("report_id", "int", min=0),
        Column("post_id", "int", min=0),
        Column("reporter_id", "int", min=1),
        Column("reported_at", "timestamp"),
        Column("harm_class", "str"),
    ),
    min_rows=0,  # a real file has no reports; the simulator's are noisy, but never absent
)

LABELS = TableSchema(
    name="labels",
    key=("post_id", "harm_class"),
    columns=(
        Column("post_id", "int", min=0),
        Column("harm_class", "str"),
        Column("label", "int", min=0, max=1),
        Column("reviewed", "int", min=0, max=1),
        Column("p_true", "float", min=0, max=1),
    ),
    optional=("p_true",),  # the oracle probability exists only for simulated data
)

TABLES = (USERS, POSTS, REPORTS, LABELS)
