"""The video world: deterministic, production-shaped, and its oracle is the ranking to beat."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.core.ranking import ranking_report
from pipelines.video_recommendation.schema import TABLES
from pipelines.world.ad_click import AdClickWorld
from pipelines.world.population import EPOCH, SCALES, age_bucket
from pipelines.world.video import CATEGORIES, MAX_POSITION, VideoWorld

TINY = SCALES["tiny"]
K = 10
_DTYPES = {"int": "int64", "float": "float64", "str": "object", "timestamp": "datetime64[ns, UTC]"}


@pytest.fixture(scope="module")
def world() -> VideoWorld:
    return VideoWorld(seed=11, scale=TINY)


@pytest.fixture(scope="module")
def tables(world: VideoWorld) -> dict[str, pd.DataFrame]:
    return world.window(0, TINY.days)


def test_same_seed_same_data_and_the_same_users_as_ad_click(world: VideoWorld) -> None:
    a = world.window(0, 2)["interactions"]
    pd.testing.assert_frame_equal(a, VideoWorld(seed=11, scale=TINY).window(0, 2)["interactions"])
    pd.testing.assert_frame_equal(world.videos(), VideoWorld(seed=11, scale=TINY).videos())
    other = VideoWorld(seed=12, scale=TINY).window(0, 2)["interactions"]
    assert not a["video_id"].equals(other["video_id"])
    pd.testing.assert_frame_equal(world.population.users, AdClickWorld(seed=11, scale=TINY).population.users)


def test_tables_have_exactly_the_contract_columns_types_and_ranges(tables: dict[str, pd.DataFrame]) -> None:
    for schema in TABLES:
        df = tables[schema.name]
        assert list(df.columns) == schema.column_names, schema.name
        assert df[list(schema.key)].drop_duplicates().shape[0] == len(df)
        for col in schema.columns:
            s = df[col.name]
            assert str(s.dtype) == _DTYPES[col.kind], (schema.name, col.name, s.dtype)
            assert col.nullable or s.notna().all(), (schema.name, col.name)
            if col.min is not None:
                assert s.min() >= col.min, (schema.name, col.name)
            if col.max is not None:
                assert s.max() <= col.max, (schema.name, col.name)
            if col.values is not None:
                assert set(s) <= set(col.values), (schema.name, col.name)
    videos = tables["videos"]
    assert set(videos["category"]) == set(CATEGORIES)
    n_tags = videos["tags"].str.split("|").str.len()
    assert n_tags.between(1, 5).all() and (videos["tags"] == videos["tags"].str.lower()).all()


def test_labels_follow_the_rule_and_the_true_probability(tables: dict[str, pd.DataFrame]) -> None:
    it = tables["interactions"]
    assert 0.03 < it["positive"].mean() < 0.08
    rule = (it["clicked"] == 1) & ((it["watch_fraction"] >= 0.5) | (it["liked"] == 1)) & (it["disliked"] == 0)
    assert (it["positive"] == rule.astype(int)).all()
    not_clicked = it["clicked"] == 0
    assert (it.loc[not_clicked, ["watch_fraction", "liked", "disliked"]] == 0).all().all()
    assert not ((it["liked"] == 1) & (it["disliked"] == 1)).any()
    # p_positive is the exact probability: calibrated on average and sharp.
    assert it["p_positive"].mean() == pytest.approx(it["positive"].mean(), rel=0.05)
    hi = it["p_positive"] > it["p_positive"].quantile(0.9)
    assert it.loc[hi, "positive"].mean() > 3 * it.loc[~hi, "positive"].mean()


def test_popularity_activity_and_position_are_skewed(tables: dict[str, pd.DataFrame]) -> None:
    it = tables["interactions"]
    videos = it["video_id"].value_counts()
    assert videos.head(len(videos) // 10).sum() / videos.sum() > 0.3  # Zipf-like head
    users = it["user_id"].value_counts()
    assert users.head(len(users) // 10).sum() / users.sum() > 0.25  # a few heavy users
    assert it["position"].between(1, MAX_POSITION).all()
    by_position = it.groupby("position")["positive"].mean()
    assert by_position.loc[1] > 1.5 * by_position.loc[10]
    # Slates: the first positions are shown in every session, deep ones rarely.
    shown = it["position"].value_counts()
    assert shown.loc[1] == shown.loc[2] and shown.loc[20] < shown.loc[1] / 5


def test_cold_start_users_and_fresh_uploads(world: VideoWorld, tables: dict[str, pd.DataFrame]) -> None:
    it, users, videos = tables["interactions"], tables["users"], tables["videos"]
    end = EPOCH + pd.Timedelta(days=TINY.days)
    new_users = users.loc[users["signup_ts"] >= EPOCH, "user_id"]
    assert it["user_id"].isin(new_users).sum() > 100
    fresh = videos.loc[videos["upload_ts"] >= EPOCH, "video_id"]
    assert len(fresh) >= 3 and it[it["positive"] == 1]["video_id"].isin(fresh).mean() > 0.03
    signup = users.set_index("user_id")["signup_ts"]
    upload = videos.set_index("video_id")["upload_ts"]
    assert (it["event_timestamp"].to_numpy() >= signup.loc[it["user_id"]].to_numpy()).all()
    assert (it["event_timestamp"].to_numpy() >= upload.loc[it["video_id"]].to_numpy()).all()
    assert (videos["upload_ts"] < end).all() and (world.videos()["upload_ts"] >= end).any()
    assert it["event_timestamp"].between(EPOCH, end, inclusive="left").all()


def test_the_policy_does_not_reshow_what_a_user_already_liked(tables: dict[str, pd.DataFrame]) -> None:
    pos = tables["interactions"].query("positive == 1")
    assert pos.duplicated(["user_id", "video_id"]).mean() < 0.02


def test_a_later_window_never_reshows_what_a_user_liked_before(world: VideoWorld) -> None:
    history = world.window(0, 6)["interactions"]
    later = world.window(6, 2)["interactions"]
    liked = pd.MultiIndex.from_frame(history.loc[history["positive"] == 1, ["user_id", "video_id"]])
    assert len(liked) > 500 and later["user_id"].isin(history["user_id"]).mean() > 0.5
    assert not pd.MultiIndex.from_frame(later[["user_id", "video_id"]]).isin(liked).any()


def test_drift_promotes_the_emerging_category_and_ids_stay_unique(world: VideoWorld) -> None:
    calm, moved = (world.window(10, 3, drift=d) for d in (0.0, 1.0))
    category = world.videos().set_index("video_id")["category"]

    def share(t: dict[str, pd.DataFrame]) -> float:
        return float((category.loc[t["interactions"]["video_id"]] == world.emerging_category).mean())

    assert share(moved) > 2 * share(calm) and share(moved) > share(calm) + 0.03
    with pytest.raises(ValueError, match="drift must be in"):
        world.window(10, 3, drift=1.5)
    ids = np.concatenate([world.window(d, 1)["interactions"]["event_id"].to_numpy() for d in (0, 1, 2)])
    assert len(np.unique(ids)) == len(ids)


def _split(tables: dict[str, pd.DataFrame], test_days: int = 2) -> dict:
    """Train on the early days, evaluate on the new positives of the last ``test_days``."""
    it = tables["interactions"]
    at = EPOCH + pd.Timedelta(days=TINY.days - test_days)
    train = it[(it["event_timestamp"] < at) & (it["positive"] == 1)]
    test = it[(it["event_timestamp"] >= at) & (it["positive"] == 1)]
    seen = {int(u): set(v) for u, v in train.groupby("user_id")["video_id"]}
    relevant = {int(u): set(v) - seen.get(int(u), set()) for u, v in test.groupby("user_id")["video_id"]}
    relevant = {u: v for u, v in relevant.items() if v}
    videos = tables["videos"][tables["videos"]["upload_ts"] <= at]
    return {"at": at, "train": train, "seen": seen, "relevant": relevant, "users": np.array(sorted(relevant)),
            "videos": videos["video_id"].to_numpy(), "category": videos["category"].to_numpy()}


def _top_k(scores: np.ndarray, s: dict) -> dict[int, list[int]]:
    out = {}
    for u, row in zip(s["users"], scores, strict=True):
        order = [int(v) for v in s["videos"][np.argsort(-row, kind="stable")] if v not in s["seen"].get(int(u), ())]
        out[int(u)] = order[:K]
    return out


def _report(scores: np.ndarray, s: dict) -> dict[str, float]:
    return ranking_report(_top_k(scores, s), s["relevant"], K)


def test_oracle_beats_popularity_and_a_learnable_signal_does_too(world: VideoWorld,
                                                                 tables: dict[str, pd.DataFrame]) -> None:
    s = _split(tables)
    counts = s["train"]["video_id"].value_counts().reindex(s["videos"], fill_value=0).to_numpy(float)
    popular = _report(np.tile(counts, (len(s["users"]), 1)), s)
    oracle = _report(world.true_scores(s["users"], s["videos"], s["at"], exclude=s["seen"]), s)
    # Learnable: a demographic segment's category taste from train positives, times popularity in the category.
    users = tables["users"].set_index("user_id")
    segment = pd.Series(age_bucket(users["age"].to_numpy()) * 3 + users["gender"].map({"f": 0, "m": 1, "u": 2}),
                        index=users.index)
    category = tables["videos"].set_index("video_id")["category"]
    pos = pd.DataFrame({"segment": segment.loc[s["train"]["user_id"]].to_numpy(),
                        "category": category.loc[s["train"]["video_id"]].to_numpy()})
    taste = pd.crosstab(pos["segment"], pos["category"]).reindex(columns=CATEGORIES, fill_value=0) + 1.0
    taste = taste.div(taste.sum(axis=1), axis=0).reindex(segment.loc[s["users"]], fill_value=1 / len(CATEGORIES))
    cat_idx = pd.Series(np.arange(len(CATEGORIES)), index=CATEGORIES).loc[s["category"]].to_numpy()
    in_category = (counts + 1) / pd.Series(counts + 1).groupby(cat_idx).transform("sum").to_numpy()
    learned = _report(taste.to_numpy()[:, cat_idx] * in_category, s)
    for m in ("recall@k", "ndcg@k"):
        assert oracle[m] > 1.3 * popular[m], (m, oracle[m], popular[m])
        assert learned[m] > 1.1 * popular[m], (m, learned[m], popular[m])
        assert oracle[m] > learned[m]


def test_true_scores_are_probabilities_of_a_positive_in_the_horizon(world: VideoWorld,
                                                                     tables: dict[str, pd.DataFrame]) -> None:
    s = _split(tables)
    users = tables["users"]
    sample = users.loc[users["signup_ts"] < s["at"], "user_id"].to_numpy()[::3]
    every = tables["videos"]["video_id"].to_numpy()
    scores = world.true_scores(sample, every, s["at"], exclude=s["seen"])
    assert scores.shape == (len(sample), len(every)) and ((scores >= 0) & (scores <= 1)).all()
    not_uploaded = tables["videos"]["upload_ts"].to_numpy() > s["at"]
    assert not_uploaded.any() and (scores[:, not_uploaded] == 0).all()
    u = next(u for u in sample if s["seen"].get(int(u)))
    row = scores[np.flatnonzero(sample == u)[0]]
    assert (row[np.isin(every, list(s["seen"][int(u)]))] == 0).all()
    # Calibrated: the expected number of new (user, video) positives in the last two days matches the log.
    test = tables["interactions"].query("positive == 1 and event_timestamp >= @s['at'] and user_id in @sample")
    new_pairs = {(a, b) for a, b in zip(test["user_id"], test["video_id"], strict=True)
                 if b not in s["seen"].get(int(a), ())}
    assert scores.sum() == pytest.approx(len(new_pairs), rel=0.2)
    with pytest.raises(ValueError, match="user ids must be in"):
        world.true_scores(np.array([0]), every, s["at"])
