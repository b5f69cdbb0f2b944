"""The visual search bodies of train, index, evaluate, monitor scoring and incremental add; the core runs them.

Train learns the contrastive encoder on the catalog images alone (no labels) and, beside it, the
baselines (raw pixels, PCA) and the supervised reference, whose catalog and query embeddings it keeps as
artifacts so evaluate scores every system the same way. The index step embeds the catalog with the
encoder and builds the served Faiss HNSW index, measured against exact search and beside IVF-PQ.
Evaluate retrieves for every held-out query image (never in the index) and scores the lists with class
relevance; simulated users click on what was shown, so the online metric (CTR) is reported too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.core.case import Report, Run, Trained
from pipelines.core.plots import systems_chart
from pipelines.visual_search.images import from_png_b64
from pipelines.visual_search.model import Embedder, VisualSearch, metadata_lookup
from pipelines.visual_search.source import image_format

SYSTEMS = ("pixels", "pca", "contrastive", "served", "supervised")
"""served = the contrastive encoder through the ANN index and re-ranking (what the service answers)."""


def _split(run: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    images = run.validated("images")
    catalog = images[images["split"] == "catalog"].reset_index(drop=True)
    queries = images[images["split"] == "query"].reset_index(drop=True)
    if catalog.empty or queries.empty:
        raise ValueError(f"visual_search needs catalog and query images, got {len(catalog)} and {len(queries)}: "
                         "a class folder needs at least two images to hold one out as a query")
    return catalog, queries


def _encoder_params(run: Run, seed: int) -> Any:
    from pipelines.visual_search.encoder import Augment, EncoderParams

    e = run.params.encoder
    return EncoderParams(**e.model_dump(exclude={"augment"}), augment=Augment(**e.augment.model_dump()), seed=seed)


def _vectors(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return pd.DataFrame(frame, columns=[f"{name}_{i}" for i in range(frame.shape[1])])


def train(run: Run) -> Trained:
    """The contrastive encoder (no labels), and the baselines' and reference's embeddings for evaluate."""
    from sklearn.decomposition import PCA

    from pipelines.visual_search.encoder import train_contrastive, train_supervised

    p, fmt = run.params, image_format(run)
    catalog, queries = _split(run)
    cat_px, query_px = from_png_b64(catalog["png"].to_numpy(), fmt), from_png_b64(queries["png"].to_numpy(), fmt)
    t0 = time.perf_counter()
    encoder = train_contrastive(cat_px, _encoder_params(run, p.seed))
    seconds = time.perf_counter() - t0
    flat = cat_px.reshape(len(cat_px), -1)
    pca = PCA(min(p.pca_components, *flat.shape), random_state=p.seed).fit(flat)
    supervised = train_supervised(cat_px, catalog["label"].to_numpy(), _encoder_params(run, p.seed))
    ids = np.concatenate([catalog["image_id"], queries["image_id"]])
    both = np.concatenate([cat_px, query_px])
    artifacts = {kind: pd.concat([pd.DataFrame({"image_id": ids}), _vectors(emb(both), kind)], axis=1)
                 for kind, emb in (("pixels", Embedder("pixels")), ("pca", Embedder("pca", pca=pca)),
                                   ("supervised", Embedder("supervised", encoder=supervised)))}
    model = VisualSearch(Embedder("contrastive", encoder=encoder), None, {}, fmt, oversample=p.rerank.oversample)
    lineage = {"feature_service": run.spec.features.service, "source": p.source, "world": run.world.id,
               "batches": run.batches("images"), "test_window": [str(queries["upload_ts"].min()),
                                                                 str(queries["upload_ts"].max())],
               "rows": {"catalog": len(catalog), "queries": len(queries)},
               "training_seconds": round(seconds, 2), "params": p.model_dump(mode="json")}
    return Trained(model, lineage, artifacts)


def index(run: Run, model: VisualSearch) -> dict[str, Any]:
    """Embed the catalog, build the served HNSW index; recall@k vs exact search, query time, memory; IVF-PQ."""
    from pipelines.core.ann import AnnIndex, HnswParams, exact_search, query_time, recall_at_k

    a, k = run.params.ann, run.params.k
    catalog, queries = _split(run)
    fmt = image_format(run)
    t0 = time.perf_counter()
    vectors = model.embedder(from_png_b64(catalog["png"].to_numpy(), fmt))
    embed_s = time.perf_counter() - t0
    ids = catalog["image_id"].to_numpy()
    t0 = time.perf_counter()
    model.index = AnnIndex.build(vectors, ids, HnswParams(a.m, a.ef_construction, a.ef_search))
    build_s = time.perf_counter() - t0
    model.labels = dict(zip(ids.tolist(), catalog["label"].tolist(), strict=True))
    model.added = []
    q = model.embedder(from_png_b64(queries["png"].to_numpy(), fmt))
    exact, _ = exact_search(vectors, ids, q, k)
    variants = {"hnsw": model.index, "flat": AnnIndex.build_factory(vectors, ids, "Flat")}
    out: dict[str, Any] = {"items": len(ids), "queries": len(q), "dim": int(vectors.shape[1]),
                           "embed_seconds": round(embed_s, 3), "build_seconds": round(build_s, 3)}
    try:  # product quantization learns its codebooks from the catalog: a handful of images is too few
        variants["ivf_pq"] = AnnIndex.build_factory(vectors, ids, a.ivf_pq, nprobe=a.nprobe)
    except RuntimeError as exc:
        out["ivf_pq"] = {"skipped": f"{a.ivf_pq} cannot be trained on {len(ids)} vectors: {str(exc).splitlines()[-1]}"}
    for name, built in variants.items():
        found, _ = built.search(q, k)
        out[name] = {f"recall@{k}": recall_at_k(found, exact), "bytes": built.nbytes(),
                     "bytes_per_vector": round(built.nbytes() / len(ids), 1),
                     **{f"query_{key}": v for key, v in query_time(built, q[:500], k).items()}}
    out[f"recall@{k}"] = out["hnsw"][f"recall@{k}"]
    out["params"] = a.model_dump()
    return out


def _metadata(run: Run) -> dict[int, dict[str, Any]]:
    """The image_metadata feature table the features step wrote (what Feast serves online), by image."""
    table = pd.read_parquet(run.paths.features(run.case) / "image_metadata.parquet")
    return {int(r["image_id"]): r for r in table.drop(columns="event_timestamp").to_dict("records")}


def _lists(run: Run, model: VisualSearch, catalog: pd.DataFrame, queries: pd.DataFrame) -> dict[str, np.ndarray]:
    """Top-k catalog ids per query for every system; -1 pads a short list."""
    from pipelines.core.ann import exact_search

    k, fmt = run.params.k, image_format(run)
    query_px = from_png_b64(queries["png"].to_numpy(), fmt)
    out: dict[str, np.ndarray] = {}
    cat_ids = catalog["image_id"].to_numpy()
    for kind in ("pixels", "pca", "supervised"):
        table = pd.read_parquet(run.work("artifacts") / f"{kind}.parquet").set_index("image_id")
        vectors, query_vectors = table.loc[cat_ids].to_numpy(), table.loc[queries["image_id"]].to_numpy()
        out[kind], _ = exact_search(vectors, cat_ids, query_vectors, k)
    out["contrastive"], _ = model.search(query_px, k)
    meta = metadata_lookup(_metadata(run))
    served = [[i for i, _, _ in model.query(q, k, meta)] for q in query_px]
    out["served"] = np.array([s + [-1] * (k - len(s)) for s in served], np.int64)
    return out


def _simulated_ctr(lists: np.ndarray, relevant: np.ndarray) -> float:
    """Expected clicks per shown result under the world's click model (position bias x relevance)."""
    from pipelines.world.visual_search import click_probability

    shown = lists >= 0
    positions = np.broadcast_to(np.arange(1, lists.shape[1] + 1), lists.shape)
    return float(click_probability(positions[shown], relevant[shown]).mean())


def evaluate(run: Run, model: VisualSearch) -> Report:
    """Every system's nDCG, MRR, mAP, recall and precision at k with class relevance, and simulated CTR."""
    from pipelines.core.ranking import ranking_report

    k = run.params.k
    catalog, queries = _split(run)
    label_of = dict(zip(catalog["image_id"].tolist(), catalog["label"].tolist(), strict=True))
    by_label = catalog.groupby("label")["image_id"].apply(set).to_dict()
    relevant = {int(q): by_label.get(lab, set()) for q, lab in zip(queries["image_id"], queries["label"], strict=True)}
    systems: dict[str, dict[str, float]] = {}
    for name, lists in _lists(run, model, catalog, queries).items():
        rec = {int(q): [int(i) for i in row if i >= 0] for q, row in zip(queries["image_id"], lists, strict=True)}
        report = ranking_report(rec, relevant, k, catalog_size=len(catalog))
        hit = np.array([[label_of.get(int(i)) == lab for i in row] for row, lab in zip(lists, queries["label"],
                                                                                        strict=True)])
        metrics = {key.replace("@k", f"@{k}"): v for key, v in report.items() if key != "diversity"}
        systems[name] = {**metrics, f"simulated_ctr@{k}": _simulated_ctr(lists, hit)}
    model_m, base, ref = systems["contrastive"], systems["pca"], systems["supervised"]
    headline = (f"ndcg@{k}", f"mrr@{k}", f"map@{k}", f"recall@{k}")
    out: dict[str, Any] = {
        "model": model_m, "baseline": base, "reference": ref, "systems": {n: systems[n] for n in SYSTEMS},
        "reference_note": "supervised: the same CNN trained WITH the labels; an upper reference, never served",
        "lift_over_pca": {m: model_m[m] / base[m] - 1 for m in headline if base[m] > 0},
        "lift_over_pixels": {m: model_m[m] / systems["pixels"][m] - 1 for m in headline if systems["pixels"][m] > 0},
        "gap_to_supervised": {m: 1 - model_m[m] / ref[m] for m in headline if ref[m] > 0},
        "coverage": {"queries": len(queries), "catalog images": len(catalog), "index": len(model.index)}}
    fig, rows = systems_chart(systems, SYSTEMS, headline[:3],
                              f"{run.case}: {len(queries):,} held-out query images, class relevance", rows_of=headline)
    return Report(out, plots={"systems": fig}, plot_data={"systems": rows},
                  reference=scored_queries(run, model, queries))


def scored_queries(run: Run, model: VisualSearch, queries: pd.DataFrame) -> pd.DataFrame:
    """One row per shown result of each query: the query's statistics, the score, and the simulated click.

    What monitoring compares: the test queries (reference) against the next window's. Query statistics
    move when the photos do (light, contrast); ``prediction`` (the cosine, mapped to [0, 1]) when the
    catalog stops matching them; ``clicked`` is the simulated users' answer.
    """
    from pipelines.world.visual_search import VisualSearchWorld

    k, fmt = run.params.k, image_format(run)
    px = from_png_b64(queries["png"].to_numpy(), fmt)
    meta = metadata_lookup(_metadata(run))
    rows = []
    for qid, label, image in zip(queries["image_id"].tolist(), queries["label"].tolist(), px, strict=True):
        stats = {"query_mean": float(image.mean()), "query_std": float(image.std()),
                 "query_ink": float((image > 0.5).mean())}
        for pos, (_, score, lab) in enumerate(model.query(image, k, meta), start=1):
            rows.append({"query_id": qid, "position": pos, **stats, "result_label": str(lab),
                         "prediction": (score + 1) / 2, "relevant": int(lab == label)})
    frame = pd.DataFrame(rows)
    world = VisualSearchWorld(run.params.seed, run.params.scale, fmt.size)
    clicked, p = world.clicks(frame["position"].to_numpy(), frame["relevant"].to_numpy(),
                              salt=int(queries["image_id"].min()))
    return frame.assign(clicked=clicked, p_click=p)


def score_window(run: Run, model: VisualSearch, window: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The next window's query photos, searched by the champion, with the simulated clicks."""
    images = window["images"]
    return scored_queries(run, model, images[images["split"] == "query"].reset_index(drop=True))


def smoke_test(run: Run, url: str) -> dict[str, Any]:
    """Search with a public catalog image (it must come back first) and with a never-indexed query photo."""
    import base64

    import httpx

    catalog, queries = _split(run)
    meta = _metadata(run)
    known = catalog[[meta.get(int(i), {}).get("private") != 1 for i in catalog["image_id"]]].iloc[0]
    out = {}
    for name, row in {"known": known, "cold_start": queries.iloc[0]}.items():
        body = {"image_b64": row["png"], "k": min(5, run.params.serving.max_k)}
        r = httpx.post(f"{url}/search", json=body, timeout=30)
        r.raise_for_status()
        results = r.json()["results"]
        if not results:
            raise RuntimeError(f"the visual_search service found nothing for the {name} image")
        if name == "known" and results[0]["image_id"] != int(row["image_id"]):
            raise RuntimeError(f"catalog image {row['image_id']} did not come back first: {results[:3]}")
        out[name] = results[:3]
    base64.b64decode(known["png"])  # the body carried the table's PNG as is
    return out


def add_to_index(run: Run, folder: Path) -> dict[str, Any]:
    """``casebook index visual_search --add DIR``: embed new images into the champion's index, no rebuild.

    The images are checked one by one like any ingest (refused files quarantined with their reason), the
    batch passes the validation gate into ``validated/`` (so the next full run includes it), their metadata
    is written to the online store, and the champion gains them as a new registered version: existing
    ids keep their vectors, so earlier results do not move.
    """
    from pipelines.core import registry
    from pipelines.core.flowset import file_batch_id
    from pipelines.core.io import write_parquet
    from pipelines.core.validation import gate_batch
    from pipelines.visual_search.features import metadata_table
    from pipelines.visual_search.source import quarantine_rejects, scan_folder

    tag, model = registry.load_champion(run.case)
    assert isinstance(model, VisualSearch) and model.index is not None
    fmt = model.fmt
    scanned = scan_folder(folder, fmt, run.params.serving.max_pixels)
    batch = "add-" + file_batch_id({"images": Path(folder)}).removeprefix("file-")
    rejects = quarantine_rejects(run, folder, scanned, batch)
    rows = scanned.rows.assign(split="catalog")
    if rows.empty:
        raise ValueError(f"no usable image in {folder}" + (f" (refused: see {rejects})" if rejects else ""))
    raw = write_parquet(rows[[c for c in run.spec.table("images").column_names if c in rows]],
                        run.paths.raw(run.case) / "images" / f"{batch}.parquet")
    gate_batch({"images": raw}, run.spec.tables, run.paths.validated(run.case), run.paths.quarantine(run.case))
    pixels = from_png_b64(rows["png"].to_numpy(), fmt)
    before = len(model.index)
    t0 = time.perf_counter()
    new = model.add(pixels, rows["image_id"].to_numpy(), rows["label"].tolist())
    seconds = time.perf_counter() - t0
    if len(new):
        meta = metadata_table(rows[rows["image_id"].isin(new)].reset_index(drop=True),
                              pixels[rows["image_id"].isin(new).to_numpy()], run.params.rerank.duplicate_similarity)
        run.store.write_to_online_store("image_metadata", meta)
    model.added.append({"batch": batch, "images": len(new), "at": pd.Timestamp.now(tz="UTC").isoformat()})
    info = registry.info(tag)
    lineage = {**info.get("lineage", {}), "added": model.added}
    new_tag = registry.save(run.case, model, metrics=info.get("metrics", {}), lineage=lineage)
    metric = run.spec.metric
    registry.set_champion(run.case, new_tag, metric=metric.key, value=info["metrics"]["model"][metric.key],
                          lower_is_better=metric.lower_is_better, window=lineage.get("test_window"))
    return {"from": tag, "champion": new_tag, "batch": batch, "added": len(new),
            "already_indexed": len(rows) - len(new),
            "refused": len(scanned.rejected), "index": {"before": before, "after": len(model.index)},
            "seconds": round(seconds, 3), **({"quarantine": str(rejects)} if rejects else {})}

