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
