"""The video recommendation bodies of train, index, evaluate and monitor scoring; the core runs them.

Time decides every split: candidate generators learn from the early days, the ranker from the next
``ranker_days`` (scored by generators that never saw them, so their scores are honest features), and the
last ``test_days`` are held out. For the test and for serving, the generators are refit on everything
before the test window; the index step then builds the served ANN index over the two-tower items.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipelines.core.case import Report, Run, Trained
from pipelines.video_recommendation import features as feats

SYSTEMS = ("popular", "trending", "demographic_popular", "als", "two_tower", "ranked", "two_stage", "oracle")


def windows(interactions: pd.DataFrame, ranker_days: int, test_days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(ranker window start, test window start), counted back in whole days from the end of the data."""
    end = interactions["event_timestamp"].max().floor("D") + pd.Timedelta(days=1)
    test_start = end - pd.Timedelta(days=test_days)
    ranker_start = test_start - pd.Timedelta(days=ranker_days)
    if interactions["event_timestamp"].min() >= ranker_start:
        raise ValueError(f"the data spans too few days for ranker_days={ranker_days}, test_days={test_days}: "
                         f"generators need days before {ranker_start.date()} (data starts "
                         f"{interactions['event_timestamp'].min()})")
    return ranker_start, test_start


def seen_before(interactions: pd.DataFrame, before: pd.Timestamp) -> dict[int, set[int]]:
    """Each user's positively engaged videos before ``before``: never recommended again."""
    pos = interactions[(interactions["positive"] == 1) & (interactions["event_timestamp"] < before)]
    return {int(u): set(v.tolist()) for u, v in pos.groupby("user_id")["video_id"]}


def _fit_generators(interactions: pd.DataFrame, videos: pd.DataFrame, users: pd.DataFrame, run: Run
                    ) -> dict[str, Any]:
    from pipelines.core.ann import HnswParams
    from pipelines.video_recommendation.generators import ALS, DemographicPopular, Popular, Trending
    from pipelines.video_recommendation.two_tower import TwoTower, TwoTowerParams

    p, g = run.params, run.params.generators
    tt = TwoTowerParams(**g.two_tower.model_dump(), seed=p.seed, ann=HnswParams(**p.ann.model_dump()))
    gens = [Popular(**g.popular.model_dump()), Trending(**g.trending.model_dump()),
            DemographicPopular(**g.demographic_popular.model_dump()), ALS(**g.als.model_dump(), seed=p.seed),
            TwoTower(tt)]
    return {gen.name: gen.fit(interactions, videos, users) for gen in gens}


def offline_features(run: Run) -> Any:
    """Feature access for offline use: Feast's point-in-time join, as of each row's event_timestamp."""
    from pipelines.core import feast

    service = run.spec.features.service

    def fetch(rows: dict[str, Any]) -> dict[str, Any]:
        keys = pd.DataFrame({c: rows[c] for c in ("user_id", "video_id", "category", "event_timestamp")},
                            index=pd.RangeIndex(len(rows["user_id"])))
        got = feast.historical(run.store, keys.fillna({"category": "unknown"}), service)
        if len(got) != len(keys):
            raise RuntimeError(f"Feast returned {len(got)} feature rows for {len(keys)} entity rows")
        return {c: got[c] for c in got.columns if c not in keys}  # historical keeps the entity rows' order

    return fetch


def _labelled_candidates(recommender: Any, interactions: pd.DataFrame, users: pd.DataFrame, start: pd.Timestamp,
                         fetch: Any) -> pd.DataFrame:
    """The candidate frame at ``start`` of every user with a positive after it, labelled by those positives.

    The ranker trains on this frame (at the ranker window), the test scores it: one shape.
    """
    after = interactions[(interactions["event_timestamp"] >= start) & (interactions["positive"] == 1)]
    frame = recommender.candidate_frame(np.sort(after["user_id"].unique()), start, fetch, users,
                                        seen_before(interactions, start))
    hits = pd.MultiIndex.from_frame(after[["user_id", "video_id"]])
    return frame.assign(positive=pd.MultiIndex.from_frame(frame[["user_id", "video_id"]]).isin(hits).astype(int))


def train(run: Run) -> Trained:
    """Generators and the ranker; stage 1 refit on everything before the test window, for test and serving."""
    from pipelines.core.recsys.ranker import Ranker
    from pipelines.video_recommendation.recommender import RANKER_FEATURES, TwoStageRecommender

    p = run.params
    interactions = run.validated("interactions")
    videos, users = run.validated("videos"), run.validated("users")
    ranker_start, test_start = windows(interactions, p.split.ranker_days, p.split.test_days)
    early = interactions[interactions["event_timestamp"] < ranker_start]
    fetch = offline_features(run)

    # Stage 2 learns to order the candidates that stage 1, knowing only the days before the ranker window,
    # proposes at its start; a candidate is positive if the user engaged with it during the window.
    catalog = videos[videos["upload_ts"] < ranker_start].reset_index(drop=True)
    early_gens = _fit_generators(early, catalog, users, run)
    early_gens["two_tower"].build_index()  # a throwaway index: only the served one is measured and saved
    stage1 = TwoStageRecommender(early_gens, None, catalog[["video_id", "upload_ts", "category"]],
                                 per_generator=p.candidates_per_generator)
    frame = _labelled_candidates(stage1, interactions[interactions["event_timestamp"] < test_start], users,
                                 ranker_start, fetch)
    holdout = (frame["user_id"] % 5) == 0  # early stopping on a fifth of the users
    ranker = Ranker(RANKER_FEATURES, feats.RANKER_CATEGORICAL, objective=p.ranker.objective,
                    params=dict(p.ranker.lightgbm), seed=p.seed).fit(frame[~holdout], frame[holdout])

    history = interactions[interactions["event_timestamp"] < test_start]
    catalog = videos[videos["upload_ts"] < test_start]
    gens = _fit_generators(history, catalog, users, run)
    recommender = TwoStageRecommender(gens, ranker, catalog[["video_id", "upload_ts", "category"]].reset_index(
        drop=True), per_generator=p.candidates_per_generator, rerank_params=p.rerank.model_dump(),
        seen=seen_before(interactions, test_start), as_of=test_start)
    lineage = {"feature_service": run.spec.features.service, "source": p.source, "world": run.world.id,
               "batches": run.batches("interactions"),
               "windows": {"ranker": str(ranker_start), "test": str(test_start)},
               "test_window": [str(test_start), str(interactions["event_timestamp"].max())],
               "rows": {"generators": len(history), "ranker": len(frame),
                        "ranker_positives": int(frame["positive"].sum())}, "params": p.model_dump(mode="json")}
    return Trained(recommender, lineage)


def index(run: Run, recommender: Any) -> dict[str, Any]:
    """Build the Faiss HNSW index of the two-tower item embeddings, widen efSearch until recall@k >= 0.95
    against exact search on half the users' queries, and report recall@k on all of them."""
    from pipelines.core.ann import HnswParams, exact_search, query_time, recall_at_k

    k, two_tower = run.params.k, recommender.generators["two_tower"]
    built = two_tower.build_index(HnswParams(**run.params.ann.model_dump()))
    queries = two_tower.user_vectors
    exact_ids, _ = exact_search(two_tower.item_vectors, two_tower.video_ids, queries, k)
    ef_search, _ = built.tune_ef_search(queries[::2], exact_ids[::2], k)
    ann_ids, _ = built.search(queries, k)
    built.save(run.work("two_tower.faiss"))
    return {f"recall@{k}": recall_at_k(ann_ids, exact_ids), "items": len(built), "queries": len(queries),
            **{f"query_{key}": v for key, v in query_time(built, queries[:1000], k).items()},
            "params": {**run.params.ann.model_dump(), "ef_search": ef_search}}


def _scored_impressions(recommender: Any, log: pd.DataFrame, videos: pd.DataFrame, users: pd.DataFrame,
                        fetch: Any) -> pd.DataFrame:
    """Every logged impression with the ranker's inputs as of its time and the ranker's score.

    What monitoring compares: the test window's (the reference) against the next window's. Both are what
    the platform logged, so a shift means users, videos or behaviour moved. Quality needs probabilities:
    a lambdarank model's scores carry no label column to compare.
    """
    from pipelines.core.recsys.arrays import utc_ns
    from pipelines.video_recommendation.recommender import VideoLookup, ranker_inputs

    rows = log[["user_id", "video_id", "event_timestamp", "positive"]].merge(
        videos[["video_id", "category"]], on="video_id", how="left")
    cols = ranker_inputs({c: rows[c] for c in rows.columns}, fetch, recommender.generators, VideoLookup.of(videos),
                         users, utc_ns(rows["event_timestamp"]))
    frame = pd.DataFrame(cols, index=rows.index)
    frame = frame.assign(prediction=recommender.ranker.predict(frame))
    return frame if recommender.ranker.objective == "binary" else frame.drop(columns="positive")


def _test_lists(run: Run, recommender: Any, interactions: pd.DataFrame, users: pd.DataFrame,
                test_start: pd.Timestamp, exclude: dict[int, set[int]], fetch: Any) -> pd.DataFrame:
    """Top-k lists for every test user from each generator alone, the two-stage system and the oracle."""
    from pipelines.video_recommendation.generators import Oracle

    k = run.params.k
    frame = _labelled_candidates(recommender, interactions, users, test_start, fetch)
    test_users = np.sort(frame["user_id"].unique())
    systems = dict(recommender.generators)
    if run.params.source == "simulator":
        from pipelines.world.population import SCALES
        from pipelines.world.video import VideoWorld

        systems["oracle"] = Oracle(VideoWorld(run.params.seed, SCALES[run.params.scale]).true_scores,
                                   recommender.videos)
    parts = []
    for name, gen in systems.items():
        recs = gen.recommend(test_users, k, exclude, test_start, users)
        parts.append(pd.DataFrame([(name, u, v, r + 1) for u, lst in recs.items() for r, (v, _) in enumerate(lst)],
                                  columns=["system", "user_id", "video_id", "rank"]))
    for name, reranked in (("ranked", False), ("two_stage", True)):  # the re-ranker's cost/benefit, shown
        top = recommender.rank(frame, k, test_start, exclude, rerank_lists=reranked)
        parts.append(top[["user_id", "video_id", "rank"]].assign(system=name))
    return pd.concat(parts, ignore_index=True)


def _ranking_metrics(lists: pd.DataFrame, interactions: pd.DataFrame, exclude: dict[int, set[int]],
                     catalog: pd.DataFrame, test_start: pd.Timestamp, k: int
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Ranking metrics of each system against the test window's new positives, and each system's per-user
    metric rows (``core.ranking.METRICS`` columns, the same users in the same order) for the bootstrap."""
    from pipelines.core.ranking import per_user_scores, summarize

    test = interactions[(interactions["event_timestamp"] >= test_start) & (interactions["positive"] == 1)]
    relevant = {int(u): set(v.tolist()) - exclude.get(int(u), set()) for u, v in test.groupby("user_id")["video_id"]}
    category = dict(zip(catalog["video_id"].tolist(), catalog["category"].tolist(), strict=True))
    out: dict[str, Any] = {}
    rows: dict[str, np.ndarray] = {}
    for name, part in lists.groupby("system", sort=False):
        recommended = {int(u): g.sort_values("rank")["video_id"].tolist() for u, g in part.groupby("user_id")}
        scored = per_user_scores(recommended, relevant, k)
        report = summarize(*scored, category, len(catalog))
        out[str(name)] = {key.replace("@k", f"@{k}"): v for key, v in report.items()}
        rows[str(name)] = scored[1]
    return out, rows


def evaluate(run: Run, recommender: Any) -> Report:
    """Every system's ranking metrics on the test window -> metrics, a comparison plot, the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.core.metrics import bootstrap_lift
    from pipelines.core.ranking import METRICS

    p, k = run.params, run.params.k
    interactions = run.validated("interactions")
    videos, users = run.validated("videos"), run.validated("users")
    _, test_start = windows(interactions, p.split.ranker_days, p.split.test_days)
    exclude, fetch = seen_before(interactions, test_start), offline_features(run)
    lists = _test_lists(run, recommender, interactions, users, test_start, exclude, fetch)
    catalog = videos[videos["upload_ts"] < test_start]
    systems, per_user = _ranking_metrics(lists, interactions, exclude, catalog, test_start, k)
    model, base = systems["two_stage"], systems["popular"]
    out: dict[str, Any] = {"model": model, "baseline": base, **({"oracle": systems["oracle"]} if "oracle" in systems
                                                                else {}),
                           "systems": systems,
                           "coverage": {"test users": int(model["users"]),
                                        "videos recommended": int(lists["video_id"].nunique())}}
    headline = (f"recall@{k}", f"ndcg@{k}")
    out["lift_over_popularity"] = {m: model[m] / base[m] - 1 for m in headline if base[m] > 0}
    out["lift_interval"] = {m: bootstrap_lift(per_user["two_stage"][:, col], per_user["popular"][:, col], seed=p.seed)
                            for m, col in ((f"recall@{k}", METRICS.index("recall@k")),
                                           (f"ndcg@{k}", METRICS.index("ndcg@k"))) if base[m] > 0}
    if "oracle" in systems:
        out["gap_to_oracle"] = {m: 1 - model[m] / systems["oracle"][m] for m in headline if systems["oracle"][m] > 0}
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [s for s in SYSTEMS if s in systems]
    x = np.arange(len(names))
    for i, m in enumerate((*headline, f"precision@{k}")):
        ax.bar(x + (i - 1) * 0.27, [systems[n][m] for n in names], width=0.27, label=m)
    ax.set_xticks(x, names, rotation=20)
    ax.set(title=f"{run.case}: test window, {out['coverage']['test users']:,} users")
    ax.legend()
    rows = [{"system": n, **{m: systems[n][m] for m in headline}} for n in names]
    test_log = interactions[interactions["event_timestamp"] >= test_start]
    reference = _scored_impressions(recommender, test_log, videos, users, fetch)
    return Report(out, plots={"systems": fig}, plot_data={"systems": rows}, reference=reference)


def score_window(run: Run, recommender: Any, window: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The next window's logged impressions, scored by the champion, as of their time.

    The world remembers the history: nothing a user engaged with before is shown again, as in the test
    window, so the two logs are comparable as they are.
    """
    return _scored_impressions(recommender, window["interactions"], window["videos"], window["users"],
                               offline_features(run))


def smoke_test(run: Run, url: str) -> dict[str, Any]:
    """Recommend for a known user and for a user the platform has never seen."""
    import httpx

    known = int(run.validated("users")["user_id"].iloc[0])
    k = min(5, run.params.serving.max_k)
    out = {}
    for name, body in {"known": {"user_id": known, "k": k},
                       "cold_start": {"user_id": 2**62, "k": k, "country": "US", "age": 30}}.items():
        r = httpx.post(f"{url}/recommend", json=body, timeout=30)
        r.raise_for_status()
        videos = r.json()["videos"]
        if not videos:
            raise RuntimeError(f"the video_recommendation service recommended nothing to the {name} user")
        out[name] = videos[:3]
    return out
