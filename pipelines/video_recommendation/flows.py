"""The video recommendation flow set: the book's seven steps as Prefect tasks composed into one flow.

Time decides every split: candidate generators learn from the early days, the ranker from the next
``ranker_days`` (scored by generators that never saw them, so their scores are honest features), and the
last ``test_days`` are held out. For the test and for serving, the generators are refit on everything
before the test window. The source is the simulator or a file of real interactions (``--source file``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.core import steps as core
from pipelines.core.flow import background_runner, record_outputs, run_step, step, submit_step
from pipelines.core.io import read_json, write_json, write_parquet
from pipelines.core.settings import ConfigError, Paths
from pipelines.core.steps import window_batch_id
from pipelines.video_recommendation import features as feats
from pipelines.video_recommendation.schema import INTERACTIONS, TABLES, USERS, VIDEOS
from pipelines.world.population import SCALES

CASE = "video_recommendation"
SOURCES = ("simulator", "file")


# -- ingest ---------------------------------------------------------------------------------------------
def _claim_source(paths: Paths, source: str) -> None:
    """One home holds one source: simulated and real ids would collide in the same tables and stores."""
    marker = paths.work(CASE) / "source.json"
    if marker.exists() and (held := read_json(marker)["source"]) != source:
        raise ConfigError(f"{paths.home} already holds {CASE} data from the {held} source; run the {source} "
                          f"source in its own home: CASEBOOK_HOME=<new dir> casebook run {CASE} ...")
    write_json({"source": source}, marker)


def _file_batch(interactions: Path, items: Path | None) -> str:
    """A file batch is named by its content: the same file lands once, a changed file lands anew."""
    h = hashlib.sha256()
    for f in (interactions, items):
        if f is not None:
            h.update(Path(f).read_bytes())
    return f"file-{h.hexdigest()[:12]}"


@step(CASE, "ingest", reads=lambda paths: [], retries=2)
def ingest(p: dict[str, Any], start_day: int, n_days: int, drift: float = 0.0) -> str:
    """Pull one window from the simulator, or read the user's interactions file, into ``raw/``."""
    from pipelines.video_recommendation import source

    _claim_source(Paths.from_env(), p["source"])
    if p["source"] == "file":
        f = p["file"]
        items = Path(f["items"]) if f.get("items") else None
        tables = source.read_file(Path(f["interactions"]), items, source.PositiveRule(
            min_rating=float(f["min_rating"]), positive_events=tuple(f["positive_events"])))
        batch = _file_batch(Path(f["interactions"]), items)
    else:
        tables = source.simulate(p["scale"], p["seed"], start_day, n_days, drift)
        batch = window_batch_id(start_day, n_days)
    core.land(CASE, batch, tables)
    return batch


# -- validate -------------------------------------------------------------------------------------------
@step(CASE, "validate", reads=lambda paths: [paths.raw(CASE)])
def validate(batch: str) -> dict[str, str]:
    """Gate each table of the batch; the first failure quarantines it and stops the flow with a summary."""
    return core.validate_batch(CASE, batch, TABLES)


# -- features -------------------------------------------------------------------------------------------
@step(CASE, "features", reads=lambda paths: [paths.validated(CASE)])
def features(prior: float) -> dict[str, Any]:
    """Feature tables from all validated data and ``feast apply``; returns how far the online store can go."""
    interactions, videos = core.validated(CASE, INTERACTIONS), core.validated(CASE, VIDEOS)
    tables = {"video_profile": feats.video_profile_table(videos),
              **feats.engagement_tables(interactions, videos, prior)}
    return core.publish_features(CASE, tables, core.validated(CASE, USERS), interactions["event_timestamp"].max())


@step(CASE, "materialize", reads=lambda paths: [paths.features(CASE), paths.features("shared")])
def materialize(end: str) -> dict[str, Any]:
    """Load the latest feature values into the online store for serving."""
    return core.materialize(CASE, feats.VIEWS, end)


# -- train ----------------------------------------------------------------------------------------------
def _windows(interactions: pd.DataFrame, split: dict[str, int]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(ranker window start, test window start), counted back in whole days from the end of the data."""
    end = interactions["event_timestamp"].max().floor("D") + pd.Timedelta(days=1)
    test_start = end - pd.Timedelta(days=split["test_days"])
    ranker_start = test_start - pd.Timedelta(days=split["ranker_days"])
    if interactions["event_timestamp"].min() >= ranker_start:
        raise ValueError(f"the data spans too few days for split {split}: generators need days before "
                         f"{ranker_start.date()} (data starts {interactions['event_timestamp'].min()})")
    return ranker_start, test_start


def _seen(interactions: pd.DataFrame, before: pd.Timestamp) -> dict[int, set[int]]:
    """Each user's positively engaged videos before ``before``: never recommended again."""
    pos = interactions[(interactions["positive"] == 1) & (interactions["event_timestamp"] < before)]
    return {int(u): set(v.tolist()) for u, v in pos.groupby("user_id")["video_id"]}


def _fit_generators(interactions: pd.DataFrame, videos: pd.DataFrame, users: pd.DataFrame,
                    p: dict[str, Any]) -> dict[str, Any]:
    from pipelines.core.ann import HnswParams
    from pipelines.video_recommendation.generators import ALS, DemographicPopular, Popular, Trending
    from pipelines.video_recommendation.two_tower import TwoTower, TwoTowerParams

    g = p["generators"]
    tt = TwoTowerParams(**g["two_tower"], seed=p["seed"], ann=HnswParams(**p["ann"]))
    gens = [Popular(**g["popular"]), Trending(**g["trending"]), DemographicPopular(**g["demographic_popular"]),
            ALS(**g["als"], seed=p["seed"]), TwoTower(tt)]
    return {gen.name: gen.fit(interactions, videos, users) for gen in gens}


def _offline_features(fs: Any) -> Any:
    """Feature access for offline use: Feast's point-in-time join, as of each row's event_timestamp."""
    from pipelines.core import feast

    def fetch(rows: dict[str, Any]) -> dict[str, Any]:
        keys = pd.DataFrame({c: rows[c] for c in ("user_id", "video_id", "category", "event_timestamp")},
                            index=pd.RangeIndex(len(rows["user_id"])))
        got = feast.historical(fs, keys.fillna({"category": "unknown"}), feats.SERVICE)
        if len(got) != len(keys):
            raise RuntimeError(f"Feast returned {len(got)} feature rows for {len(keys)} entity rows")
        return {c: got[c] for c in got.columns if c not in keys}  # historical keeps the entity rows' order

    return fetch


@step(CASE, "train", reads=lambda paths: [paths.features(CASE), paths.features("shared")])
def train(p: dict[str, Any]) -> str:
    """Generators, the ANN index and the ranker; the test window's lists of every system for evaluate."""
    from pipelines.core import feast, registry
    from pipelines.core.recsys.ranker import Ranker
    from pipelines.video_recommendation.recommender import RANKER_FEATURES, TwoStageRecommender

    paths = Paths.from_env()
    interactions = core.validated(CASE, INTERACTIONS)
    videos, users = core.validated(CASE, VIDEOS), core.validated(CASE, USERS)
    ranker_start, test_start = _windows(interactions, p["split"])
    early = interactions[interactions["event_timestamp"] < ranker_start]
    fs = feast.store(paths)
    fetch = _offline_features(fs)

    # Stage 2 learns to order the candidates that stage 1, knowing only the days before the ranker window,
    # proposes at its start; a candidate is positive if the user engaged with it during the window.
    catalog = videos[videos["upload_ts"] < ranker_start].reset_index(drop=True)
    early_gens = _fit_generators(early, catalog, users, p)
    early_gens["two_tower"].build_index()  # a throwaway index: only the served one is measured and saved
    stage1 = TwoStageRecommender(early_gens, None,
                                 catalog[["video_id", "upload_ts", "category"]],
                                 per_generator=p["candidates_per_generator"])
    frame = _labelled_candidates(stage1, interactions[interactions["event_timestamp"] < test_start], users,
                                 ranker_start, fetch)
    holdout = (frame["user_id"] % 5) == 0  # early stopping on a fifth of the users
    rp = dict(p["ranker"])
    ranker = Ranker(RANKER_FEATURES, feats.RANKER_CATEGORICAL, objective=rp.pop("objective"), params=rp,
                    seed=p["seed"]).fit(frame[~holdout], frame[holdout])

    # Stage 1 for the test and for serving: refit on everything before the test window, then index.
    history = interactions[interactions["event_timestamp"] < test_start]
    catalog = videos[videos["upload_ts"] < test_start]
    gens = _fit_generators(history, catalog, users, p)
    # Never from the cache: the index belongs to the vectors of this fit.
    ann = index.with_options(refresh_cache=True)(two_tower=gens["two_tower"], ann=p["ann"], k=p["k"])
    recommender = TwoStageRecommender(gens, ranker, catalog[["video_id", "upload_ts", "category"]].reset_index(
        drop=True), per_generator=p["candidates_per_generator"], rerank_params=p["rerank"],
        seen=_seen(interactions, test_start), as_of=test_start)
    lists, reference = _test_lists(recommender, interactions, videos, users, test_start, p, fetch)
    lineage = {"feature_service": feats.SERVICE, "source": p["source"],
               "batches": sorted(f.stem for f in (paths.validated(CASE) / "interactions").glob("*.parquet")),
               "windows": {"ranker": str(ranker_start), "test": str(test_start)},
               "rows": {"generators": len(history), "ranker": len(frame),
                        "ranker_positives": int(frame["positive"].sum())}, "params": p}
    write_parquet(lists, paths.work(CASE) / "test_lists.parquet")
    write_parquet(reference, paths.work(CASE) / "reference.parquet")
    metrics = _evaluate_lists(lists, interactions, recommender.seen, catalog, test_start, p["k"])
    tag = registry.save(CASE, recommender, metrics=metrics, lineage=lineage)
    write_json({"tag": tag, "metrics": metrics, "ann": ann, "lineage": lineage}, paths.work(CASE) / "challenger.json")
    record_outputs(paths, CASE, "train", [paths.work(CASE) / "challenger.json"])
    return tag


@step(CASE, "index", reads=lambda paths: [])
def index(two_tower: Any, ann: dict[str, Any], k: int) -> dict[str, Any]:
    """Build the Faiss HNSW index of the two-tower item embeddings; measure recall@k against exact search."""
    from pipelines.core.ann import HnswParams, exact_search, query_time, recall_at_k

    paths = Paths.from_env()
    built = two_tower.build_index(HnswParams(**ann))
    queries = two_tower.user_vectors
    ann_ids, _ = built.search(queries, k)
    exact_ids, _ = exact_search(two_tower.item_vectors, two_tower.video_ids, queries, k)
    built.save(paths.work(CASE) / "two_tower.faiss")
    out = {f"recall@{k}": recall_at_k(ann_ids, exact_ids), "items": len(built), "queries": len(queries),
           **{f"query_{key}": v for key, v in query_time(built, queries[:1000], k).items()}, "params": ann}
    record_outputs(paths, CASE, "index", [paths.work(CASE) / "two_tower.faiss"])
    return out


def _labelled_candidates(recommender: Any, interactions: pd.DataFrame, users: pd.DataFrame, start: pd.Timestamp,
                         fetch: Any) -> pd.DataFrame:
    """The candidate frame at ``start`` of every user with a positive after it, labelled by those positives.

    The ranker trains on this frame (at the ranker window), the test and monitoring score it: one shape,
    so drift between them means the world moved, not that the frames differ.
    """
    after = interactions[(interactions["event_timestamp"] >= start) & (interactions["positive"] == 1)]
    frame = recommender.candidate_frame(np.sort(after["user_id"].unique()), start, fetch, users,
                                        _seen(interactions, start))
    hits = pd.MultiIndex.from_frame(after[["user_id", "video_id"]])
    return frame.assign(positive=pd.MultiIndex.from_frame(frame[["user_id", "video_id"]]).isin(hits).astype(int))


def _test_lists(recommender: Any, interactions: pd.DataFrame, videos: pd.DataFrame, users: pd.DataFrame,
                test_start: pd.Timestamp, p: dict[str, Any], fetch: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top-k lists for every test user from each generator alone, the two-stage system and the oracle;
    and the scored candidate frame of the test window (monitoring's reference)."""
    from pipelines.video_recommendation.generators import Oracle

    k, exclude = p["k"], recommender.seen
    frame = _labelled_candidates(recommender, interactions, users, test_start, fetch)
    test_users = np.sort(frame["user_id"].unique())
    systems = dict(recommender.generators)
    if p["source"] == "simulator":
        from pipelines.world.video import VideoWorld

        systems["oracle"] = Oracle(VideoWorld(p["seed"], SCALES[p["scale"]]).true_scores, recommender.videos)
    parts = []
    for name, gen in systems.items():
        recs = gen.recommend(test_users, k, exclude, test_start, users)
        parts.append(pd.DataFrame([(name, u, v, r + 1) for u, lst in recs.items() for r, (v, _) in enumerate(lst)],
                                  columns=["system", "user_id", "video_id", "rank"]))
    for name, reranked in (("ranked", False), ("two_stage", True)):  # the re-ranker's cost/benefit, shown
        top = recommender.rank(frame, k, test_start, exclude, rerank_lists=reranked)
        parts.append(top[["user_id", "video_id", "rank"]].assign(system=name))
    test_log = interactions[interactions["event_timestamp"] >= test_start]
    return pd.concat(parts, ignore_index=True), _scored_impressions(recommender, test_log, videos, users, fetch)


def _scored_impressions(recommender: Any, log: pd.DataFrame, videos: pd.DataFrame, users: pd.DataFrame,
                        fetch: Any) -> pd.DataFrame:
    """Every logged impression with the ranker's inputs as of its time and the ranker's score.

    What monitoring compares: the test window's (the reference) against the next window's. Both are what
    the platform logged, so a shift means users, videos or behaviour moved.
    """
    from pipelines.core.recsys.arrays import utc_ns
    from pipelines.video_recommendation.recommender import VideoLookup, ranker_inputs

    rows = log[["user_id", "video_id", "event_timestamp", "positive"]].merge(
        videos[["video_id", "category"]], on="video_id", how="left")
    cols = ranker_inputs({c: rows[c] for c in rows.columns}, fetch, recommender.generators, VideoLookup.of(videos),
                         users, utc_ns(rows["event_timestamp"]))
    frame = pd.DataFrame(cols, index=rows.index)
    return frame.assign(prediction=recommender.ranker.predict(frame))


def _evaluate_lists(lists: pd.DataFrame, interactions: pd.DataFrame, exclude: dict[int, set[int]],
                    catalog: pd.DataFrame, test_start: pd.Timestamp, k: int) -> dict[str, Any]:
    """Ranking metrics of each system against the test window's new positives."""
    from pipelines.core.ranking import ranking_report

    test = interactions[(interactions["event_timestamp"] >= test_start) & (interactions["positive"] == 1)]
    relevant = {int(u): set(v.tolist()) - exclude.get(int(u), set()) for u, v in test.groupby("user_id")["video_id"]}
    category = dict(zip(catalog["video_id"].tolist(), catalog["category"].tolist(), strict=True))
    out: dict[str, Any] = {}
    for name, part in lists.groupby("system", sort=False):
        recommended = {int(u): g.sort_values("rank")["video_id"].tolist() for u, g in part.groupby("user_id")}
        report = ranking_report(recommended, relevant, k, category, len(catalog))
        out[str(name)] = {key.replace("@k", f"@{k}"): v for key, v in report.items()}
    out["model"], out["baseline"] = out["two_stage"], out["popular"]
    return out


# -- evaluate -------------------------------------------------------------------------------------------
@step(CASE, "evaluate", reads=lambda paths: [paths.work(CASE) / "challenger.json"])
def evaluate() -> dict[str, Any]:
    """Metrics of every system (and the ANN index) -> metrics JSON and a comparison plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = Paths.from_env()
    challenger = read_json(paths.work(CASE) / "challenger.json")
    metrics, k = challenger["metrics"], challenger["lineage"]["params"]["k"]
    systems = [s for s in metrics if s not in ("model", "baseline")]
    lists = pd.read_parquet(paths.work(CASE) / "test_lists.parquet")
    out: dict[str, Any] = {"model": metrics["model"], "baseline": metrics["baseline"],
                           **({"oracle": metrics["oracle"]} if "oracle" in metrics else {}),
                           "systems": {s: metrics[s] for s in systems}, "ann": challenger["ann"],
                           "model_tag": challenger["tag"],
                           "coverage": {"test users": int(metrics["model"]["users"]),
                                        "videos recommended": int(lists["video_id"].nunique())}}
    base = metrics["baseline"]
    out["lift_over_popularity"] = {m: metrics["model"][m] / base[m] - 1 for m in (f"recall@{k}", f"ndcg@{k}")
                                   if base[m] > 0}
    if "oracle" in metrics:
        out["gap_to_oracle"] = {m: 1 - metrics["model"][m] / metrics["oracle"][m]
                                for m in (f"recall@{k}", f"ndcg@{k}") if metrics["oracle"][m] > 0}
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [s for s in ("popular", "trending", "demographic_popular", "als", "two_tower", "ranked", "two_stage",
                         "oracle")
             if s in metrics]
    x = np.arange(len(names))
    for i, m in enumerate((f"recall@{k}", f"ndcg@{k}", f"precision@{k}")):
        ax.bar(x + (i - 1) * 0.27, [metrics[n][m] for n in names], width=0.27, label=m)
    ax.set_xticks(x, names, rotation=20)
    ax.set(title=f"{CASE}: test window, {out['coverage']['test users']:,} users")
    ax.legend()
    plot = paths.plots(CASE) / "systems.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=100, bbox_inches="tight")
    plt.close(fig)
    write_json([{"system": n, **{m: metrics[n][m] for m in (f"recall@{k}", f"ndcg@{k}")}} for n in names],
               paths.plots(CASE) / "systems.json")
    write_json(out, paths.metrics(CASE))
    record_outputs(paths, CASE, "evaluate", [paths.metrics(CASE), plot])
    return out


# -- deploy ---------------------------------------------------------------------------------------------
@step(CASE, "deploy", reads=lambda paths: [paths.work(CASE) / "challenger.json"])
def deploy(smoke_test: bool, build: bool) -> dict[str, Any]:
    """Promote only a challenger with a better nDCG, build the Bento, and prove the service answers."""
    k = read_json(Paths.from_env().work(CASE) / "challenger.json")["lineage"]["params"]["k"]
    return core.deploy(CASE, metric=f"ndcg@{k}", lower_is_better=False, build=build,
                       smoke_test=_smoke_test if smoke_test else None)


def _smoke_test(url: str) -> dict[str, Any]:
    """Recommend for a known user and for a user the platform has never seen."""
    import httpx

    known = int(core.validated(CASE, USERS)["user_id"].iloc[0])
    out = {}
    for name, body in {"known": {"user_id": known, "k": 5},
                       "cold_start": {"user_id": 2**62, "k": 5, "country": "US", "age": 30}}.items():
        r = httpx.post(f"{url}/recommend", json=body, timeout=30)
        r.raise_for_status()
        out[name] = r.json()["videos"][:3]
    return out


# -- monitor --------------------------------------------------------------------------------------------
@step(CASE, "monitor", reads=lambda paths: [paths.work(CASE) / "reference.parquet"])
def monitor(p: dict[str, Any], start_day: int, n_days: int, drift: float) -> dict[str, Any]:
    """Score the next window's logged impressions with the champion and compare them with the test window's."""
    from pipelines.core import feast, registry
    from pipelines.core.monitoring import DriftThresholds, drift_report
    from pipelines.video_recommendation import source
    from pipelines.video_recommendation.recommender import REQUEST_FEATURES

    paths = Paths.from_env()
    window = source.simulate(p["scale"], p["seed"], start_day, n_days, drift)
    tag, rec = registry.load_champion(CASE)
    # The world remembers the history: nothing a user engaged with before is shown again, as in the
    # test window, so the two logs are comparable as they are.
    current = _scored_impressions(rec, window["interactions"], window["videos"], window["users"],
                                  _offline_features(feast.store(paths)))
    reference = pd.read_parquet(paths.work(CASE) / "reference.parquet")
    binary = rec.ranker.objective == "binary"  # quality needs probabilities; lambdarank scores are not
    batch = window_batch_id(start_day, n_days)
    # Cumulative counters (``*_impressions``) grow by design between any two windows; their rates drift
    # only when behaviour does, so the rates are what is compared.
    numerical = [c for c in feats.RANKER_NUMERIC + REQUEST_FEATURES if not c.endswith("_impressions")]
    result = drift_report(CASE, reference, current, numerical=numerical,
                          categorical=feats.RANKER_CATEGORICAL, prediction="prediction",
                          target="positive" if binary else None,
                          thresholds=DriftThresholds.from_params(p["monitor"]["thresholds"]),
                          workspace=paths.evidently_workspace, html_dir=paths.monitoring(CASE),
                          tags=[f"window:{batch}", f"drift:{drift}", f"model:{tag}"])
    out = {"window": batch, "drift": drift, "model_tag": tag, **result.to_dict()}
    write_json(out, paths.monitoring(CASE) / "latest.json")
    return out


# -- the flow -------------------------------------------------------------------------------------------
def _params(scale: str | None, seed: int | None, source: str | None, interactions: Path | None,
            items: Path | None) -> dict[str, Any]:
    """params.yaml with the run's overrides; a file source is checked here, before any work starts."""
    p = core.case_params(CASE, scale, seed)
    p["file"] = dict(p.get("file") or {})
    if interactions is not None:
        p["file"]["interactions"], source = str(Path(interactions).resolve()), source or "file"
    if items is not None:
        p["file"]["items"] = str(Path(items).resolve())
    p["source"] = source or p.get("source", "simulator")
    if p["source"] not in SOURCES:
        raise ConfigError(f"{CASE}.source must be one of {list(SOURCES)}, got {p['source']!r}")
    if p["source"] == "file":
        for key in ("interactions", "items"):
            f = p["file"].get(key)
            if key == "interactions" and not f:
                raise ConfigError("the file source needs an interactions file: --interactions PATH "
                                  f"(or {CASE}.file.interactions in params.yaml)")
            if f and not Path(f).is_file():
                raise ConfigError(f"{key} file {f} does not exist")
    elif interactions is None and items is not None:
        raise ConfigError("--items only goes with the file source: add --interactions PATH")
    return p


def _steps(p: dict[str, Any]) -> core.CaseSteps:
    """Each step's task with this run's parameters bound."""

    def monitor_window(start: int, days: int, drift: float) -> dict[str, Any]:
        if p["source"] != "simulator":
            raise ValueError("monitor scores the next simulated window; with a file source, land the new "
                             "window as another file instead (`--source file --interactions NEW`)")
        # Monitoring always looks at fresh traffic: never served from the cache.
        return monitor.with_options(refresh_cache=True)(p=p, start_day=start, n_days=days, drift=drift)

    return core.CaseSteps(
        ingest=lambda start, days, drift: run_step(ingest, CASE, "ingest", p=p, start_day=start, n_days=days,
                                                   drift=drift),
        validate=lambda batch: run_step(validate, CASE, "validate", batch=batch),
        features=lambda: run_step(features, CASE, "features", prior=p["engagement_prior"]),
        materialize=lambda end: submit_step(materialize, CASE, "materialize", end=end),
        train=lambda: run_step(train, CASE, "train", p=p),
        evaluate=lambda: run_step(evaluate, CASE, "evaluate"),
        deploy=lambda: run_step(deploy, CASE, "deploy", **p["deploy"]),
        monitor=monitor_window,
    )


def video_recommendation_flow(steps: list[str] | None = None, scale: str | None = None, seed: int | None = None,
                              drift: float | None = None, source: str | None = None,
                              interactions: Path | None = None, items: Path | None = None) -> dict[str, Any]:
    """Run the chosen steps (all by default) in order; returns each step's result."""
    from prefect import flow

    @flow(name=CASE, log_prints=True, validate_parameters=False, task_runner=background_runner())
    def run(steps: list[str], p: dict[str, Any], drift: float) -> dict[str, Any]:
        return core.drive(_steps(p), steps, SCALES[p["scale"]].days, p["monitor"], drift)

    p = _params(scale, seed, source, interactions, items)
    chosen = core.chosen_steps(steps)
    if steps is None and p["source"] == "file":
        chosen.remove("monitor")
    return run(chosen, p, p["monitor"]["drift"] if drift is None else drift)
