"""Data contract of the image table (one row per image); the GX suite is derived from it.

The image itself travels as ``png``: the normalised image (configured size and channels) as base64 PNG,
so a validated batch holds everything the encoder reads. ``width``/``height`` are the original's.
"""

from pipelines.core.validation import Column, TableSchema
from pipelines.visual_search.images import MAX_SIDE

IMAGES = TableSchema(
    name="images",
    key=("image_id",),
    columns=(
        Column("image_id", "int", min=1),
        Column("owner_id", "int", min=0),  # 0: unknown (your files)
        Column("label", "str"),
        Column("split", "str", values=("catalog", "query")),
        Column("upload_ts", "timestamp"),
        Column("private", "int", min=0, max=1),
        Column("width", "int", min=1, max=MAX_SIDE),
        Column("height", "int", min=1, max=MAX_SIDE),
        Column("sha256", "str"),
        Column("png", "str"),
        Column("camera_strength", "float", min=0, max=1),
    ),
    optional=("camera_strength",),  # how hard the simulated camera distorted a query: simulator only
)

TABLES = (IMAGES,)
