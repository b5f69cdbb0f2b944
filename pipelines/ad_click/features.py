"""Validated ad-click tables -> Feast feature tables (one function per feature view)."""

from __future__ import annotations

import pandas as pd

from pipelines.core.case import Run
from pipelines.core.features import rate_snapshots
from pipelines.world.ad_click import ATTRIBUTION_SECONDS

SERVICE = "ad_click_v1"


def build(run: Run) -> dict[str, pd.DataFrame]:
    """Every feature table from all validated data (the core writes them and applies the Feast views)."""
    return {"ad_profile": ad_profile_table(run.validated("ads")),
            **ctr_tables(run.validated("impressions"), run.params.ctr_prior)}


def ad_profile_table(ads: pd.DataFrame) -> pd.DataFrame:
    out = ads.drop(columns=["created_ts"]).copy()
    out["event_timestamp"] = ads["created_ts"]
    return out


def ctr_tables(impressions: pd.DataFrame, prior: float) -> dict[str, pd.DataFrame]:
    """Historical CTR per ad, user and user-ad pair; a click is known once its attribution window closed."""
    matured = impressions["event_timestamp"] + pd.Timedelta(seconds=ATTRIBUTION_SECONDS)
    return {
        "ad_ctr": rate_snapshots(impressions, ["ad_id"], "clicked", matured, "ad", prior),
        "user_ctr": rate_snapshots(impressions, ["user_id"], "clicked", matured, "user", prior),
        "user_ad_ctr": rate_snapshots(impressions, ["user_id", "ad_id"], "clicked", matured, "user_ad", prior),
    }
