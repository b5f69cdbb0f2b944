"""The data contract of the shared user table, used by every case study that has users."""

from pipelines.core.validation import Column, TableSchema
from pipelines.world.population import COUNTRIES, GENDERS

USERS = TableSchema(
    name="users",
    key=("user_id",),
    columns=(
        Column("user_id", "int", min=1),
        Column("signup_ts", "timestamp"),
        Column("age", "int", min=13, max=120),
        Column("gender", "str", values=tuple(GENDERS)),
        Column("country", "str", values=tuple(COUNTRIES)),
        Column("language", "str"),
    ),
)
