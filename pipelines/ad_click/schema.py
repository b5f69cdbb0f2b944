"""Data contracts of the ad-click tables; the GX suites are derived from these."""

from pipelines.core.validation import Column, TableSchema
from pipelines.world.ad_click import ATTRIBUTION_SECONDS, CATEGORIES, DEVICES
from pipelines.world.population import COUNTRIES
from pipelines.world.schema import USERS

ADS = TableSchema(
    name="ads",
    key=("ad_id",),
    columns=(
        Column("ad_id", "int", min=1),
        Column("advertiser_id", "int", min=1),
        Column("campaign_id", "int", min=1),
        Column("category", "str", values=tuple(CATEGORIES)),
        Column("target_country", "str", values=(*COUNTRIES, "ANY")),
        Column("min_age", "int", min=0, max=120),
        Column("max_age", "int", min=0, max=120),
        Column("created_ts", "timestamp"),
    ),
)

IMPRESSIONS = TableSchema(
    name="impressions",
    key=("impression_id",),
    columns=(
        Column("impression_id", "int", min=0),
        Column("event_timestamp", "timestamp"),
        Column("user_id", "int", min=1),
        Column("ad_id", "int", min=1),
        Column("position", "int", min=1, max=50),
        Column("device", "str", values=tuple(DEVICES)),
        Column("hour", "int", min=0, max=23),
        Column("clicked", "int", min=0, max=1),
        Column("click_delay_s", "float", nullable=True, min=0, max=ATTRIBUTION_SECONDS),
        Column("p_click", "float", min=0, max=1),
    ),
    optional=("p_click",),  # the oracle probability exists only for simulated data
)

TABLES = (USERS, ADS, IMPRESSIONS)
