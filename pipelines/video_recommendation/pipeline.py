"""The video recommendation bodies of train, index, evaluate and monitor scoring; the core runs them.

``split.py`` decides what trains, what labels the ranker and what tests: one time cut (``global``), or
each user's latest interactions (``per_user``). Candidate generators learn from what comes before the
ranker's labels (so their scores are honest features), the ranker from candidates labelled by what each
user did next; for the test and for serving, the generators are refit on everything but the test. The
index step then builds the served ANN index over the two-tower items.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipelines.core.case import Report, Run, Trained
from pipelines.core.plots import systems_chart
from pipelines.video_recommendation import features as feats
from pipelines.video_recommendation.split import Cut, not_yet_uploaded, split, summary

SYSTEMS = ("popular", "trending", "demographic_popular", "als", "two_tower", "co_visit", "ranked", "two_stage",
           "oracle")


def _fit_generators(interactions: pd.DataFrame, videos: pd.DataFrame, users: pd.DataFrame, run: Run
                    ) -> dict[str, Any]:
    from pipelines.core.ann import HnswParams
    from pipelines.video_recommendation.generators import ALS, CoVisit, DemographicPopular, Popular, Trending
    from pipelines.video_recommendation.two_tower import TwoTower, TwoTowerParams

    p, g = run.params, run.params.generators
    tt = TwoTowerParams(**g.two_tower.model_dump(), seed=p.seed, ann=HnswParams(**p.ann.model_dump()))
    gens = [Popular(**g.popular.model_dump()), Trending(**g.trending.model_dump()),
            DemographicPopular(**g.demographic_popular.model_dump()), ALS(**g.als.model_dump(), seed=p.seed),
            TwoTower(tt), CoVisit(**g.co_visit.model_dump())]
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


def _labelled_candidates(recommender: Any, cut: Cut, users: pd.DataFrame, fetch: Any,
                         exclude: dict[int, set[int]]) -> pd.DataFrame:
    """The candidate frame of every user with a held-out positive, as of their time, labelled by those
    positives.

    The ranker trains on this frame (at its cut), the test scores it: one shape.
    """
    after = cut.positives
    per_user = cut.as_of if cut.per_user else None
    frame = recommender.candidate_frame(cut.as_of.index.to_numpy(), cut.clock, fetch, users, exclude, per_user)
    hits = pd.MultiIndex.from_frame(after[["user_id", "video_id"]])
    return frame.assign(positive=pd.MultiIndex.from_frame(frame[["user_id", "video_id"]]).isin(hits).astype(int))


def _catalog(videos: pd.DataFrame, cut: Cut) -> pd.DataFrame:
    """The videos on the platform at the cut (the latest user's time, for a per-user one)."""
    at = cut.as_of.max() + pd.Timedelta(1, "ns") if cut.per_user else cut.clock
    return videos[videos["upload_ts"] < at].reset_index(drop=True)


def _exclude(cut: Cut, videos: pd.DataFrame) -> dict[int, set[int]]:
    """What a user is never shown at the cut: what they engaged with, and what was not uploaded yet."""
    seen, later = cut.seen(), not_yet_uploaded(videos, cut.as_of)
    return {u: seen.get(u, set()) | later.get(u, set()) for u in seen.keys() | later.keys()}


def train(run: Run) -> Trained:
    """Generators and the ranker; stage 1 refit on everything but the test, for test and serving."""
    from pipelines.core.recsys.ranker import Ranker
    from pipelines.video_recommendation.recommender import RANKER_FEATURES, TwoStageRecommender

    p = run.params
    interactions = run.validated("interactions")
    videos, users = run.validated("videos"), run.validated("users")
    ranker_cut, test_cut = split(interactions, p.split)
    fetch = offline_features(run)

    # Stage 2 learns to order the candidates that stage 1, knowing only the ranker cut's history,
    # proposes at each user's time; a candidate is positive if the user engaged with it next.
    catalog = _catalog(videos, ranker_cut)
    early_gens = _fit_generators(ranker_cut.history, catalog, users, run)
    early_gens["two_tower"].build_index()  # a throwaway index: only the served one is measured and saved
    stage1 = TwoStageRecommender(early_gens, None, catalog[["video_id", "upload_ts", "category"]],
                                 per_generator=p.candidates_per_generator)
    frame = _labelled_candidates(stage1, ranker_cut, users, fetch, _exclude(ranker_cut, videos))
    holdout = (frame["user_id"] % 5) == 0  # early stopping on a fifth of the users
    ranker = Ranker(RANKER_FEATURES, feats.RANKER_CATEGORICAL, objective=p.ranker.objective,
                    params=dict(p.ranker.lightgbm), seed=p.seed).fit(frame[~holdout], frame[holdout])

    history, catalog = test_cut.history, _catalog(videos, test_cut)
    gens = _fit_generators(history, catalog, users, run)
    recommender = TwoStageRecommender(gens, ranker, catalog[["video_id", "upload_ts", "category"]],
                                      per_generator=p.candidates_per_generator, rerank_params=p.rerank.model_dump(),
                                      seen=test_cut.seen(), as_of=test_cut.clock)
    lineage = {"feature_service": run.spec.features.service, "source": p.source, "world": run.world.id,
               "batches": run.batches("interactions"),
               "windows": {"ranker": str(ranker_cut.clock), "test": str(test_cut.clock)},  # the models' clocks
               "split": {"kind": p.split.kind, "ranker": ranker_cut.describe(), "test": test_cut.describe()},
               "test_window": [str(test_cut.as_of.min()), str(interactions["event_timestamp"].max())],
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


def _test_lists(run: Run, recommender: Any, cut: Cut, users: pd.DataFrame, exclude: dict[int, set[int]],
                fetch: Any) -> pd.DataFrame:
    """Top-k lists for every test user from each generator alone, the two-stage system and the oracle."""
    from pipelines.video_recommendation.generators import Oracle

    k, test_start = run.params.k, cut.clock
    frame = _labelled_candidates(recommender, cut, users, fetch, exclude)
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


def _ranking_metrics(lists: pd.DataFrame, cut: Cut, exclude: dict[int, set[int]], catalog: pd.DataFrame, k: int
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Ranking metrics of each system against the held-out new positives, and each system's per-user
    metric rows (``core.ranking.METRICS`` columns, the same users in the same order) for the bootstrap."""
    from pipelines.core.ranking import per_user_scores, summarize

    test = cut.positives
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
    from pipelines.core.metrics import bootstrap_lift
    from pipelines.core.ranking import METRICS

    p, k = run.params, run.params.k
    interactions = run.validated("interactions")
    videos, users = run.validated("videos"), run.validated("users")
    ranker_cut, cut = split(interactions, p.split)
    exclude, fetch = _exclude(cut, videos), offline_features(run)
    lists = _test_lists(run, recommender, cut, users, exclude, fetch)
    systems, per_user = _ranking_metrics(lists, cut, exclude, _catalog(videos, cut), k)
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
    out["split"] = summary(p.split, ranker_cut, cut)
    out["notes"] = _notes(out)
    if "oracle" in systems:
        out["gap_to_oracle"] = {m: 1 - model[m] / systems["oracle"][m] for m in headline if systems["oracle"][m] > 0}
    fig, rows = systems_chart(systems, [s for s in SYSTEMS if s in systems], (*headline, f"precision@{k}"),
                              f"{run.case}: test window, {out['coverage']['test users']:,} users", rows_of=headline)
    reference = _scored_impressions(recommender, cut.heldout, videos, users, fetch)
    return Report(out, plots={"systems": fig}, plot_data={"systems": rows}, reference=reference)


def _notes(out: dict[str, Any]) -> list[str]:
    """The report's lines under the table: which split the numbers stand on, and whether the lift is real."""
    sp = out["split"]
    lines = [f"split: {sp['kind']} ({sp['rule']}); test: {sp['test']['users']:,} users, "
             f"{sp['test']['interactions']:,} held-out interactions ({sp['test']['positives']:,} positive); "
             f"ranker labels: {sp['ranker']['users']:,} users, {sp['ranker']['interactions']:,} interactions"]
    for m, ci in out["lift_interval"].items():
        verdict = ("beats popularity" if ci["low"] > 0 else "loses to popularity" if ci["high"] < 0
                   else "not shown to differ from popularity")
        lines.append(f"two_stage vs popular, {m}: {ci['lift']:+.1%} ({ci['confidence']:.0%} interval "
                     f"{ci['low']:+.1%} to {ci['high']:+.1%}, paired bootstrap over {ci['units']:,} users): {verdict}")
    return lines


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
