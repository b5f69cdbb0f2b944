"""Video recommendation models on a small synthetic world with planted structure.

Each age-gender segment prefers one category (most users follow their segment), items have a mild
popularity skew, and a positive is far likelier on the preferred category: a generator that learns the
structure beats popularity, and one that uses demographics can serve users it has never seen.
"""

import pickle

import numpy as np
import pandas as pd
import pytest

from pipelines.core.ranking import ranking_report
from pipelines.core.recsys.generators import CandidateGenerator
from pipelines.core.recsys.ranker import Ranker
from pipelines.core.recsys.rerank import rerank
from pipelines.video_recommendation.generators import ALS, CoVisit, DemographicPopular, Popular, Trending
from pipelines.video_recommendation.two_tower import TwoTower, TwoTowerParams

T0 = pd.Timestamp("2026-01-01", tz="UTC")
CUT = T0 + pd.Timedelta(days=8)
N_USERS, N_ITEMS, N_CATS = 800, 60, 6
SEGMENTS = [(age, g) for age in (20, 30, 40, 50) for g in ("f", "m")]


def make_world(seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, len(SEGMENTS), N_USERS)
    seg_pref = rng.permutation(np.arange(len(SEGMENTS)) % N_CATS)
    pref = np.where(rng.random(N_USERS) < 0.85, seg_pref[seg], rng.integers(0, N_CATS, N_USERS))
    country = rng.choice(["US", "IN"], N_USERS)
    users = pd.DataFrame({
        "user_id": np.arange(1, N_USERS + 1, dtype=np.int64),
        "signup_ts": T0 - pd.Timedelta(days=100),
        "age": [SEGMENTS[s][0] + 2 for s in seg],
        "gender": [SEGMENTS[s][1] for s in seg],
        "country": country,
        "language": np.where(country == "US", "en", "hi"),
    })
    cat = np.arange(N_ITEMS) % N_CATS
    upload_day = np.where(np.arange(N_ITEMS) >= N_ITEMS - 3, 9.0, -30.0)  # 3 videos appear after the cut
    videos = pd.DataFrame({
        "video_id": np.arange(1, N_ITEMS + 1, dtype=np.int64),
        "upload_ts": T0 + pd.to_timedelta(upload_day, unit="D"),
        "creator_id": 1,
        "duration_s": rng.uniform(30, 900, N_ITEMS).round(1),
        "language": "en",
        "category": [f"cat{c}" for c in cat],
        "tags": [f"tag{c}|fmt{i % 3}" for i, c in enumerate(cat)],
        "title": "a video",
    })
    n = N_USERS * 25
    user = rng.integers(0, N_USERS, n)
    popularity = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.7
    item = rng.choice(N_ITEMS, n, p=rng.permutation(popularity) / popularity.sum())
    day = rng.uniform(0, 10, n)
    live = upload_day[item] <= day
    p = np.where(cat[item] == pref[user], 0.5, 0.03)
    positive = (rng.random(n) < p) & live
    interactions = pd.DataFrame({
        "event_id": np.arange(n, dtype=np.int64),
        "event_timestamp": T0 + pd.to_timedelta(day * 86_400, unit="s").round("s"),
        "user_id": user + 1, "video_id": item + 1, "positive": positive.astype(np.int64),
    })[live].sort_values("event_timestamp", ignore_index=True)
    return {"users": users, "videos": videos, "interactions": interactions, "pref": pref}


@pytest.fixture(scope="module")
def world() -> dict:
    w = make_world()
    inter = w["interactions"]
    w["train"] = inter[inter["event_timestamp"] < CUT]
    w["test"] = inter[inter["event_timestamp"] >= CUT]
    w["catalog"] = w["videos"][w["videos"]["upload_ts"] < CUT]
    train_pos = w["train"][w["train"]["positive"] == 1]
    w["seen"] = {int(u): set(v) for u, v in train_pos.groupby("user_id")["video_id"]}
    return w


TT = TwoTowerParams(dim=16, hidden=32, epochs=8, batch_size=256, temperature=0.5, seed=0)


@pytest.fixture(scope="module")
def fitted(world: dict) -> dict[str, CandidateGenerator]:
    args = (world["train"], world["catalog"], world["users"])
    return {"popular": Popular().fit(*args), "trending": Trending().fit(*args),
            "demographic_popular": DemographicPopular().fit(*args), "als": ALS(factors=16).fit(*args),
            "two_tower": _indexed(TwoTower(TT).fit(*args)), "co_visit": CoVisit().fit(*args)}


def _indexed(tt: TwoTower) -> TwoTower:
    tt.build_index()
    return tt


def test_every_generator_returns_k_unseen_available_videos(world: dict, fitted: dict) -> None:
    users = np.array(sorted(world["seen"])[:50])
    later = T0 + pd.Timedelta(days=9.5)  # the 3 late videos are live by now, but not in the fitted catalog
    for name, gen in fitted.items():
        recs = gen.recommend(users, 5, exclude=world["seen"], at=CUT)
        assert set(recs) == set(users.tolist()), name
        for user, items in recs.items():
            ids = [v for v, _ in items]
            assert len(ids) == 5 and len(set(ids)) == 5, name
            assert not set(ids) & world["seen"][user], name
            assert set(ids) <= set(world["catalog"]["video_id"]), name
            scores = [s for _, s in items]
            assert scores == sorted(scores, reverse=True), name
        assert gen.recommend(users[:2], 3, at=later)  # a later `at` is fine


def test_videos_uploaded_after_at_are_never_recommended(world: dict) -> None:
    videos = world["videos"]
    gen = Popular().fit(world["interactions"], videos)  # trained on everything: late videos are popular too
    late = set(videos.loc[videos["upload_ts"] > CUT, "video_id"])
    before = gen.recommend(np.array([1]), N_ITEMS, at=CUT)[1]
    after = gen.recommend(np.array([1]), N_ITEMS, at=T0 + pd.Timedelta(days=10))[1]
    assert not {v for v, _ in before} & late and late <= {v for v, _ in after}


def recall_by(gen: CandidateGenerator, world: dict, users: np.ndarray | None = None) -> float:
    test = world["test"][world["test"]["positive"] == 1]
    relevant = {int(u): set(v) - world["seen"].get(int(u), set()) for u, v in test.groupby("user_id")["video_id"]}
    ids = np.array(sorted(relevant)) if users is None else users
    recs = gen.recommend(ids, 10, exclude=world["seen"], at=CUT, users=world["users"])
    report = ranking_report({u: [v for v, _ in r] for u, r in recs.items()},
                            {u: relevant[u] for u in ids.tolist() if u in relevant}, k=10)
    return report["recall@k"]


def test_learned_generators_beat_popularity(world: dict, fitted: dict) -> None:
    popular = recall_by(fitted["popular"], world)
    for name in ("als", "two_tower", "demographic_popular"):
        assert recall_by(fitted[name], world) > 1.3 * popular, name


def test_co_visit_beats_popularity_for_users_with_history_and_has_nothing_for_others(world: dict,
                                                                                    fitted: dict) -> None:
    """Co-occurrence knows a user only through their own positives: better than popularity for them,
    silent for a user it has never seen (the ranker then reads NaN, not a made-up score)."""
    with_history = np.array(sorted(set(world["seen"]) & set(world["test"]["user_id"].tolist())))
    assert recall_by(fitted["co_visit"], world, with_history) > 1.3 * recall_by(fitted["popular"], world, with_history)
    assert fitted["co_visit"].recommend(np.array([99_999]), 5, at=CUT) == {99_999: []}
    score, rank = fitted["co_visit"].pair_scores(np.array([99_999]), np.array([1]))
    assert np.isnan(score).all() and np.isnan(rank).all()


def test_pair_ranks_are_each_generators_own_order(world: dict, fitted: dict) -> None:
    """A pair's rank feature is its place in the generator's whole-catalogue list for that user (ties in
    any order): more than the videos it scores higher, at most those it scores at least as high."""
    users, catalog = np.array(sorted(world["seen"])[:20]), world["catalog"]["video_id"].to_numpy()
    for name, gen in fitted.items():
        for user, items in gen.recommend(users, 5, at=CUT, users=world["users"]).items():
            ids = np.array([v for v, _ in items])
            score, rank = gen.pair_scores(np.full(len(ids), user), ids, users=world["users"])
            assert np.allclose(score, [s for _, s in items]), name
            every = np.nan_to_num(gen.score_pairs(np.full(len(catalog), user), catalog, users=world["users"]),
                                  nan=-np.inf)
            for s_, r in zip(score, rank, strict=True):
                assert (every > s_).sum() < r <= (every >= s_).sum(), name


def test_cold_start_users_are_served_from_demographics(world: dict, fitted: dict) -> None:
    # New users (ids never seen) described only by demographics, one per segment.
    new = pd.DataFrame({"user_id": 10_000 + np.arange(len(SEGMENTS)), "age": [a + 2 for a, _ in SEGMENTS],
                        "gender": [g for _, g in SEGMENTS], "country": "US", "language": "en"})
    ids = new["user_id"].to_numpy()
    # the category each segment prefers, as the training data shows it
    train = world["train"].merge(world["users"], on="user_id").merge(world["videos"][["video_id", "category"]])
    liked = train[train["positive"] == 1].groupby(["age", "gender"])["category"].agg(lambda c: c.mode()[0])
    for name in ("demographic_popular", "als", "two_tower"):
        recs = fitted[name].recommend(ids, 5, at=CUT, users=new)
        cats = world["videos"].set_index("video_id")["category"]
        hits = [np.mean([cats[v] == liked[(a + 2, g)] for v, _ in recs[u]])
                for u, (a, g) in zip(ids, SEGMENTS, strict=True)]
        assert np.mean(hits) > 0.6, name  # chance is 1/6
    assert fitted["popular"].recommend(ids[:1], 5)[ids[0]]  # the same list as for anyone
    plain = ALS(factors=8, demographic_weight=0).fit(world["train"], world["catalog"], world["users"])
    assert plain.recommend(ids[:1], 5, users=new)[ids[0]] == []  # nothing to go on without demographics


def test_two_tower_index_scores_are_the_model_scores(world: dict, fitted: dict) -> None:
    tt = fitted["two_tower"]
    users = np.array([1, 2, 3, 99_999])
    recs = tt.recommend(users, 10, users=pd.DataFrame({"user_id": [99_999], "age": [30], "gender": ["f"]}))
    for user, items in recs.items():
        ids, scores = np.array([v for v, _ in items]), np.array([s for _, s in items])
        assert np.allclose(tt.score_pairs(np.full(len(ids), user), ids, users=None if user < 99_999 else
                                          pd.DataFrame({"user_id": [99_999], "age": [30], "gender": ["f"]})),
                           scores, atol=1e-4)
    assert np.isnan(tt.score_pairs(np.array([1]), np.array([12345]))[0])  # unknown video
    unindexed = pickle.loads(pickle.dumps(tt))
    unindexed.index = None  # fit() leaves indexing to the flow's index step
    with pytest.raises(RuntimeError, match="build_index"):
        unindexed.recommend(users, 10)


def test_models_pickle_and_answer_the_same(world: dict, fitted: dict) -> None:
    users = np.array([1, 5, 7])
    for name, gen in fitted.items():
        copy = pickle.loads(pickle.dumps(gen))
        assert copy.recommend(users, 5, exclude=world["seen"], at=CUT) == gen.recommend(
            users, 5, exclude=world["seen"], at=CUT), name


def test_trending_surfaces_a_fresh_video_with_a_burst() -> None:
    videos = pd.DataFrame({"video_id": [1, 2, 3], "upload_ts": [T0 - pd.Timedelta(days=60)] * 2 + [T0 + pd.Timedelta(
        days=6.8)], "category": "x", "language": "en", "duration_s": 60.0, "tags": "a"})
    old = [(1, d) for d in np.linspace(0, 6.9, 60)] + [(2, d) for d in np.linspace(0, 6.9, 30)]
    burst = [(3, d) for d in np.linspace(6.9, 6.99, 12)]  # uploaded hours ago, already liked a dozen times
    rows = pd.DataFrame(old + burst, columns=["video_id", "day"])
    inter = pd.DataFrame({"user_id": np.arange(len(rows)) + 1, "video_id": rows["video_id"],
                          "event_timestamp": T0 + pd.to_timedelta(rows["day"], unit="D"), "positive": 1})
    assert Trending().fit(inter, videos).recommend(np.array([1]), 1)[1][0][0] == 3
    assert Popular().fit(inter, videos).recommend(np.array([1]), 1)[1][0][0] == 1


def ranker_frame(seed: int, n_users: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_users * 20
    frame = pd.DataFrame({"user_id": np.repeat(np.arange(n_users), 20), "als_score": rng.normal(size=n),
                          "video_popularity": rng.exponential(size=n), "category": rng.choice(["a", "b", "c"], n),
                          "noise": rng.normal(size=n)})
    logit = 1.5 * frame["als_score"] + 0.5 * np.log1p(frame["video_popularity"]) + (frame["category"] == "b") - 2
    frame["positive"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


@pytest.mark.parametrize("objective", ["lambdarank", "binary"])
def test_ranker_learns_the_signal(objective: str) -> None:
    from sklearn.metrics import roc_auc_score

    features = ["als_score", "video_popularity", "category", "noise"]
    ranker = Ranker(features, categorical=["category"], objective=objective,
                    params={"num_boost_round": 60, "min_data_in_leaf": 20}).fit(ranker_frame(0), ranker_frame(1))
    test = ranker_frame(2)
    assert roc_auc_score(test["positive"], ranker.predict(test)) > 0.75
    test.loc[:5, "category"] = "never seen"  # unseen category: treated as missing, not as another category
    assert np.isfinite(ranker.predict(test)).all()
    copy = pickle.loads(pickle.dumps(ranker))
    assert np.allclose(copy.predict(test), ranker.predict(test))
    with pytest.raises(ValueError, match="noise"):
        ranker.predict(test.drop(columns="noise"))


def test_ranker_scores_request_columns_exactly_as_a_frame() -> None:
    """A request's columns (Python lists, None for missing, as online reads give them) score bit for bit
    like the same rows in a DataFrame (LightGBM's pandas-categorical path), so serving matches evaluation."""
    import lightgbm as lgb

    features = ["als_score", "video_popularity", "category", "noise"]
    train = ranker_frame(0)
    ranker = Ranker(features, categorical=["category"], objective="binary",
                    params={"num_boost_round": 40, "min_data_in_leaf": 20}).fit(train)
    test = ranker_frame(2).astype({"category": object})
    test.loc[:9, "category"] = None
    test.loc[10:19, "category"] = "never seen"
    test.loc[20:29, "als_score"] = np.nan
    columns = {c: [None if isinstance(v, float) and np.isnan(v) else v for v in test[c].tolist()] for c in features}
    assert np.array_equal(ranker.predict(columns), ranker.predict(test))
    # ... and like LightGBM's own pandas-categorical path on a booster trained from the same frame
    params = {k: v for k, v in (Ranker.DEFAULTS | {"min_data_in_leaf": 20}).items()
              if k not in ("num_boost_round", "early_stopping_rounds")}
    params |= {"objective": "binary", "metric": "auc", "seed": 0, "deterministic": True, "verbose": -1}
    categorical = {"category": pd.Categorical(train["category"], categories=ranker.categories["category"])}
    booster = lgb.train(params, lgb.Dataset(train[features].assign(**categorical), train["positive"],
                                            categorical_feature=["category"]), num_boost_round=40)
    frame = test[features].assign(category=pd.Categorical(test["category"], categories=ranker.categories["category"]))
    assert np.allclose(booster.predict(frame), ranker.predict(test))


def candidates(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "video_id", "score", "stage", "age_days", "category"])
    frame["upload_ts"] = CUT - pd.to_timedelta(frame.pop("age_days"), unit="D")
    return frame


def test_rerank_caps_categories_and_backfills() -> None:
    c = candidates([(1, v, 10.0 - v, "als", 100, "music" if v <= 4 else "news") for v in range(1, 7)])
    out = rerank(c, k=4, at=CUT, freshness_weight=0.0, max_per_category=2)
    assert out["video_id"].tolist() == [1, 2, 5, 6]  # two music, then news moves up
    assert out["rank"].tolist() == [1, 2, 3, 4]
    out = rerank(c, k=5, at=CUT, freshness_weight=0.0, max_per_category=2)
    assert out["video_id"].tolist() == [1, 2, 5, 6, 3]  # too few others: the cap gives way


def test_rerank_dedups_across_stages_and_drops_watched() -> None:
    c = candidates([(1, 1, 0.9, "two_tower", 100, "a"), (1, 1, 0.5, "als", 100, "a"), (1, 2, 0.8, "popular", 100, "b"),
                    (1, 3, 0.7, "als", 100, "c"), (2, 1, 0.1, "als", 100, "a")])
    out = pd.DataFrame(rerank(c, k=10, at=CUT, freshness_weight=0.0, exclude={1: {3}}))
    mine = out[out["user_id"] == 1]
    assert mine["video_id"].tolist() == [1, 2]
    assert mine["stage"].tolist() == ["als,two_tower", "popular"]
    assert out[out["user_id"] == 2]["video_id"].tolist() == [1]


def test_rerank_boosts_fresh_uploads() -> None:
    c = candidates([(1, 1, 1.0, "als", 300, "a"), (1, 2, 0.9, "trending", 0.2, "b"), (1, 3, 0.0, "als", 300, "c")])
    plain = rerank(c, k=3, at=CUT, freshness_weight=0.0)
    boosted = rerank(c, k=3, at=CUT, freshness_weight=1.0)
    assert plain["video_id"].tolist()[:2] == [1, 2] and boosted["video_id"].tolist()[:2] == [2, 1]
    unknown = c.assign(upload_ts=pd.NaT)  # unknown upload time: no boost
    assert rerank(unknown, k=3, at=CUT, freshness_weight=1.0)["video_id"].tolist()[:2] == [1, 2]


def table_features(world: dict, as_lists: bool):
    """A feature source over the world's tables: Series like the offline store, or lists with None like the
    online store; the recommender must give the same lists either way."""
    from pipelines.video_recommendation.features import RANKER_CATEGORICAL, RANKER_NUMERIC

    users = world["users"].set_index("user_id")
    videos = world["videos"].set_index("video_id").rename(columns={"language": "video_language",
                                                                   "category": "video_category"})
    pos = world["train"].merge(world["videos"][["video_id", "category"]]).assign(clicked=lambda f: f["positive"])
    stats = {"video": pos.groupby("video_id")["positive"].agg(["size", "mean"]),
             "viewer": pos.groupby("user_id").agg(size=("positive", "size"), mean=("positive", "mean"),
                                                  clicks=("clicked", "mean")),
             "user_category": pos.groupby(["user_id", "category"]).agg(
                 size=("positive", "size"), mean=("positive", "mean"), clicks=("clicked", "mean"))}
    keys = {"video": "video_id", "viewer": "user_id", "user_category": ["user_id", "category"]}

    def fetch(rows: dict) -> dict:
        frame = pd.DataFrame({c: rows[c] for c in ("user_id", "video_id", "category")})
        out = frame.join(users[["age", "gender", "country", "language"]], on="user_id").join(
            videos[["duration_s", "video_language", "video_category"]], on="video_id")
        for prefix, table in stats.items():
            got = frame.join(table, on=keys[prefix])
            out[f"{prefix}_impressions"], out[f"{prefix}_positive_rate"] = got["size"], got["mean"]
            if "clicks" in got:
                out[f"{prefix}_click_rate"] = got["clicks"]
        cols = RANKER_NUMERIC + RANKER_CATEGORICAL
        if as_lists:
            return {c: [None if pd.isna(v) else v for v in out[c].tolist()] for c in cols}
        return {c: out[c].reset_index(drop=True) for c in cols}

    return fetch


def test_one_request_gets_exactly_the_list_batch_evaluation_gives(world: dict, fitted: dict) -> None:
    """The service's single-user path and the evaluate step's batch path are the same computation."""
    from pipelines.video_recommendation.features import RANKER_CATEGORICAL
    from pipelines.video_recommendation.recommender import RANKER_FEATURES, TwoStageRecommender

    new = pd.DataFrame({"user_id": [10_001], "age": [33], "gender": ["f"], "country": ["US"], "language": ["en"]})
    users = pd.concat([world["users"], new], ignore_index=True)
    rec = TwoStageRecommender(fitted, None, world["catalog"][["video_id", "upload_ts", "category"]],
                              per_generator=10, rerank_params={"max_per_category": 2}, seen=world["seen"], as_of=CUT)
    ids = np.array([*sorted(world["seen"])[:60], 10_001])
    frame = rec.candidate_frame(ids, CUT, table_features(world, as_lists=False), users, world["seen"])
    test = world["test"][world["test"]["positive"] == 1]
    hits = pd.MultiIndex.from_frame(test[["user_id", "video_id"]])
    frame["positive"] = pd.MultiIndex.from_frame(frame[["user_id", "video_id"]]).isin(hits).astype(int)
    rec.ranker = Ranker(RANKER_FEATURES, RANKER_CATEGORICAL, objective="binary",
                        params={"num_boost_round": 30, "min_data_in_leaf": 20}).fit(frame)
    batch = rec.rank(frame, 5, CUT, world["seen"])
    online = table_features(world, as_lists=True)
    for user in ids[::6].tolist():  # the last is the cold-start user
        one = rec.recommend(np.array([user]), 5, CUT, online, users[users["user_id"] == user], world["seen"])
        mine = batch[batch["user_id"] == user]
        assert one["video_id"].tolist() == mine["video_id"].tolist(), user
        assert one["stage"].tolist() == mine["stage"].tolist(), user
        assert np.allclose(one["score"], mine["score"].to_numpy(float)), user
        assert one["rank"].tolist() == list(range(1, 6)) and not set(one["video_id"].tolist()) & world["seen"].get(
            user, set())
