"""Visual search (the book's chapter 2), declared for the core.

A contrastively trained image encoder (SimCLR, no labels) embeds a catalog of real images; the ``index``
step builds the Faiss index the service searches; re-ranking reads image metadata from Feast. On the
simulated digit platform or on your own folder (``--source file --images DIR``, class subfolders); new
images join the served index without a rebuild (``casebook index visual_search --add DIR``).
This case has no users in its model: its Feast entity is the image.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipelines.core.case import (
    CaseParams,
    CaseSpec,
    Features,
    FileInput,
    Metric,
    Params,
    Plot,
    ServingParams,
    Source,
    Step,
    StepParams,
    lazy,
)
from pipelines.visual_search.schema import TABLES

K = 10
"""The list length the headline metric is taken at (``k`` in params.yaml must match it)."""


class FileSource(Params):
    images: str | None = Field(None, description="a folder of images in class subfolders: DIR/<label>/<image>")
    query_share: float = Field(0.2, gt=0, lt=1, description="share of each class held out as query images")


class Image(Params):
    size: int = Field(16, ge=8, le=128, description="side of the square every image is resized to")
    channels: Literal[1, 3] = Field(1, description="1 grey, 3 RGB")


class Augment(Params):
    rotate_deg: float = Field(ge=0, le=180)
    zoom: float = Field(ge=0, lt=1)
    shift: float = Field(ge=0, lt=1, description="largest shift, as a share of the side")
    contrast: float = Field(ge=0, lt=1)
    noise: float = Field(ge=0, le=1)
    erase: float = Field(ge=0, lt=1, description="side of the erased square, as a share of the side")


class Encoder(Params):
    dim: int = Field(ge=2, le=1024)
    width: int = Field(ge=4, le=256)
    steps: int = Field(ge=1, description="optimizer steps: a fixed budget whatever the catalog size")
    batch_size: int = Field(ge=4)
    lr: float = Field(gt=0)
    temperature: float = Field(gt=0)
    augment: Augment


class Ann(Params):
    m: int = Field(ge=2, le=128)
    ef_construction: int = Field(ge=1)
    ef_search: int = Field(ge=1)
    ivf_pq: str = Field("IVF8,PQ16x4", description="the product-quantized index measured beside HNSW")
    nprobe: int = Field(4, ge=1)


class Rerank(Params):
    oversample: int = Field(4, ge=1, le=50, description="neighbours fetched per result, before filtering")
    duplicate_similarity: float = Field(gt=0, le=1, description="pixel cosine from which images are near-duplicates")


class Serving(ServingParams):
    max_k: int = Field(50, ge=1, le=1000)
    max_bytes: int = Field(5_000_000, ge=1000, description="largest accepted upload")
    max_pixels: int = Field(25_000_000, ge=64, description="largest accepted width x height")
    max_exclude_owners: int = Field(100, ge=0)


class VisualSearchParams(CaseParams):
    source: Literal["simulator", "file"] = "simulator"
    file: FileSource = FileSource()
    image: Image = Image()
    k: Literal[10] = K
    pca_components: int = Field(ge=1)
    encoder: Encoder
    ann: Ann
    rerank: Rerank
    serving: Serving = Serving()


CASE = CaseSpec(
    name="visual_search",
    title="Visual search",
    metric=Metric(f"ndcg@{K}", lower_is_better=False),
    params=VisualSearchParams,
    tables=TABLES,
    source=Source(simulate=lazy("pipelines.visual_search.source:simulate"),
                  read_files=lazy("pipelines.visual_search.source:read_files"),
                  file_inputs=(FileInput("images", "a folder of images in class subfolders: DIR/<label>/<image>",
                                         kind="dir"),)),
    features=Features(build=lazy("pipelines.visual_search.features:build"), service="visual_search_v1", users=None),
    train=lazy("pipelines.visual_search.pipeline:train"),
    evaluate=lazy("pipelines.visual_search.pipeline:evaluate"),
    score_window=lazy("pipelines.visual_search.pipeline:score_window"),
    smoke_test=lazy("pipelines.visual_search.pipeline:smoke_test"),
    step_params=StepParams(ingest=("source", "file", "image", "serving"), features=("image", "rerank"),
                           train=("source", "image", "pca_components", "encoder", "rerank"),
                           evaluate=("source", "scale", "seed", "image", "k")),
    extra_steps=(Step("index", lazy("pipelines.visual_search.pipeline:index"), reads=("ann", "k", "image")),),
    add_to_index=lazy("pipelines.visual_search.pipeline:add_to_index"),
    serving_packages=("torch", "scikit-learn", "scipy", "faiss-cpu", "pillow"),
    plots=(Plot("systems", x=f"ndcg@{K}", y="system", title=f"visual_search nDCG@{K} by system (held-out queries)",
                template="bar_horizontal"),),
    schedule_minute=15,
)
