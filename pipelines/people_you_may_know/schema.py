"""Data contracts of the people-you-may-know tables; the GX suites are derived from these.

Users and friendships are the shared world's contracts. ``affiliations`` holds what homophily acts on
(city, school, workplace) with the time it became true, so a user who changes school gets a new row and
a point-in-time join sees the school of its moment. A file source may leave every group unknown (-1,
``"unknown"``) and carries no friend requests (the table is then empty).
"""

from pipelines.core.validation import Column, TableSchema
from pipelines.world.schema import FRIENDSHIPS, USERS

STATUSES = ("accepted", "ignored", "blocked")

AFFILIATIONS = TableSchema(
    name="affiliations",
    key=("user_id", "since_ts"),
    columns=(
        Column("user_id", "int", min=1),
        Column("since_ts", "timestamp"),
        Column("city", "str"),
        Column("school_id", "int", min=-1),
        Column("workplace_id", "int", min=-1),
    ),
    optional=("workplace_id",),  # what an export often lacks; without it no pair shares a workplace
)

FRIEND_REQUESTS = TableSchema(
    name="friend_requests",
    key=("request_id",),
    columns=(
        Column("request_id", "int", min=0),
        Column("event_timestamp", "timestamp"),
        Column("sender_id", "int", min=1),
        Column("recipient_id", "int", min=1),
        Column("status", "str", values=STATUSES),
    ),
    min_rows=0,  # a file of edges carries no requests
)
"""Every request sent: ``accepted`` ones are the friendships, ``blocked`` pairs are never recommended."""

TABLES = (USERS, FRIEND_REQUESTS, FRIENDSHIPS, AFFILIATIONS)
