"""The data contract of the shared user table, used by every case study that has users.

Real interaction logs carry no demographics, so a user built from one has an unknown age (null) and
country ``"unknown"``: explicit, never a made-up value.
"""

from pipelines.core.validation import Column, TableSchema
from pipelines.world.population import COUNTRIES, GENDERS

USERS = TableSchema(
    name="users",
    key=("user_id",),
    columns=(
        Column("user_id", "int", min=1),
        Column("signup_ts", "timestamp"),
        Column("age", "int", nullable=True, min=13, max=120),
        Column("gender", "str", values=tuple(GENDERS)),
        Column("country", "str", values=(*COUNTRIES, "unknown")),
        Column("language", "str"),
    ),
)

HOMES = TableSchema(
    name="homes",
    key=("user_id",),
    columns=(
        Column("user_id", "int", min=1),
        Column("city", "str"),
        Column("home_lat", "float", min=-90, max=90),
        Column("home_lon", "float", min=-180, max=180),
        Column("school_id", "int", min=-1),
        Column("workplace_id", "int", min=-1),
    ),
    optional=("school_id", "workplace_id"),
)
"""Where each user lives (and studies or works, -1 for none): a table beside ``USERS``, not new columns of
it, so the user contract of every other case stays as it is. Graph-shaped cases share it."""

FRIENDSHIPS = TableSchema(
    name="friendships",
    key=("user_id", "friend_id"),
    columns=(
        Column("user_id", "int", min=1),
        Column("friend_id", "int", min=1),  # user_id < friend_id: an undirected edge is one row
        Column("created_ts", "timestamp"),
    ),
)
"""The shared social graph's edges, each with the time it formed (``pipelines.world.social``)."""
