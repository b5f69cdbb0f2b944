"""Data contracts of the event tables; the GX suites are derived from these.

Users, homes and friendships are the shared world's contracts. ``p_register`` (the oracle) is optional:
a real log does not know it.
"""

from pipelines.core.validation import Column, TableSchema
from pipelines.world.event import CATEGORIES, SLATE
from pipelines.world.schema import FRIENDSHIPS, HOMES, USERS

EVENTS = TableSchema(
    name="events",
    key=("event_id",),
    columns=(
        Column("event_id", "int", min=1),
        Column("created_ts", "timestamp"),
        Column("start_ts", "timestamp"),
        Column("host_id", "int", min=1),
        Column("category", "str", values=tuple(CATEGORIES)),
        Column("price", "float", min=0, max=10_000),
        Column("capacity", "int", min=1, max=1_000_000),
        Column("venue_lat", "float", min=-90, max=90),
        Column("venue_lon", "float", min=-180, max=180),
    ),
)

INVITATIONS = TableSchema(
    name="invitations",
    key=("invitation_id",),
    columns=(
        Column("invitation_id", "int", min=0),
        Column("event_timestamp", "timestamp"),
        Column("inviter_id", "int", min=1),
        Column("invitee_id", "int", min=1),
        Column("event_id", "int", min=1),
    ),
)

IMPRESSIONS = TableSchema(
    name="impressions",
    key=("impression_id",),
    columns=(
        Column("impression_id", "int", min=0),
        Column("event_timestamp", "timestamp"),
        Column("user_id", "int", min=1),
        Column("event_id", "int", min=1),
        Column("position", "int", min=1, max=SLATE),
        Column("user_lat", "float", min=-90, max=90),
        Column("user_lon", "float", min=-180, max=180),
        Column("registered", "int", min=0, max=1),
        Column("p_register", "float", min=0, max=1),
    ),
    optional=("p_register",),
)

TABLES = (USERS, HOMES, FRIENDSHIPS, EVENTS, INVITATIONS, IMPRESSIONS)
