"""The simulator: deterministic, production-shaped, and honest about its true probabilities."""

import numpy as np
import pandas as pd
import pytest

from pipelines.world.ad_click import AdClickWorld
from pipelines.world.population import EPOCH, SCALES


@pytest.fixture(scope="module")
def world() -> AdClickWorld:
    return AdClickWorld(seed=11, scale=SCALES["tiny"])


def test_same_seed_same_data(world: AdClickWorld) -> None:
    a = world.window(0, 3)["impressions"]
    b = AdClickWorld(seed=11, scale=SCALES["tiny"]).window(0, 3)["impressions"]
    pd.testing.assert_frame_equal(a, b)
    c = AdClickWorld(seed=12, scale=SCALES["tiny"]).window(0, 3)["impressions"]
    assert not a["clicked"].equals(c["clicked"])


def test_ctr_is_a_few_percent_and_labels_follow_true_probability(world: AdClickWorld) -> None:
    imp = world.window(0, SCALES["tiny"].days)["impressions"]
    assert 0.015 < imp["clicked"].mean() < 0.06
    # Clicks concentrate where the true probability is high.
    hi = imp["p_click"] > imp["p_click"].quantile(0.9)
    assert imp.loc[hi, "clicked"].mean() > 2 * imp.loc[~hi, "clicked"].mean()


def test_popularity_is_skewed_and_position_biased(world: AdClickWorld) -> None:
    imp = world.window(0, SCALES["tiny"].days)["impressions"]
    counts = imp["ad_id"].value_counts()
    top_decile = counts.head(max(1, len(counts) // 10)).sum() / counts.sum()
    assert top_decile > 0.35  # Zipf-like head
    by_pos = imp.groupby("position")["p_click"].mean()
    assert by_pos.loc[1] > by_pos.loc[5]


def test_cold_start_users_and_ads_exist(world: AdClickWorld) -> None:
    tables = world.window(0, SCALES["tiny"].days)
    assert (tables["users"]["signup_ts"] >= EPOCH).any()
    assert (tables["ads"]["created_ts"] >= EPOCH).any()
    users = tables["users"].set_index("user_id")["signup_ts"]
    imp = tables["impressions"]
    assert (imp["event_timestamp"].to_numpy() >= users.loc[imp["user_id"]].to_numpy()).all()


def test_drift_moves_the_next_window(world: AdClickWorld) -> None:
    calm = world.window(10, 3, drift=0.0)
    moved = world.window(10, 3, drift=1.0)
    users = calm["users"].set_index("user_id")
    share = {k: users.loc[t["impressions"]["user_id"], "country"].isin(["NG", "ID"]).mean()
             for k, t in (("calm", calm), ("moved", moved))}
    assert share["moved"] > share["calm"] + 0.05
    with pytest.raises(ValueError, match="drift must be in"):
        world.window(10, 3, drift=1.5)


def test_impression_ids_unique_across_windows(world: AdClickWorld) -> None:
    ids = np.concatenate([world.window(d, 2)["impressions"]["impression_id"].to_numpy() for d in (0, 2, 4)])
    assert len(np.unique(ids)) == len(ids)
