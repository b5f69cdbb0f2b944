"""The served visual search model: an embedder, the ANN index of the catalog, and re-ranking.

Every system the case compares is an ``Embedder`` (raw pixels, PCA, the contrastive encoder, the
supervised reference), so all are evaluated by the same code. The served one embeds a query, asks the
Faiss index for ``oversample * k`` neighbours and re-ranks them with the metadata the service reads from
Feast: private images are dropped, blocked owners filtered, and near-duplicates collapsed to the best
one of each group. Images are added to the index without a rebuild (``add``): ids already indexed
keep their vectors, so existing results do not move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pipelines.core.ann import AnnIndex
from pipelines.visual_search.images import ImageFormat

Kind = Literal["pixels", "pca", "contrastive", "supervised"]


@dataclass
class Embedder:
    """Images (n, c, h, w) in [0, 1] -> L2-normalised vectors; ``pca``/``encoder`` set by the kind."""

    kind: Kind
    pca: Any = None
    encoder: Any = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if self.encoder is not None:
            from pipelines.visual_search.encoder import embed

            return embed(self.encoder, images)
        x = np.asarray(images, np.float32).reshape(len(images), -1)
        if self.pca is not None:
            x = self.pca.transform(x).astype(np.float32)
        x = x - x.mean(axis=1, keepdims=True) if self.pca is None else x  # pixels: brightness-invariant cosine
        return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)).astype(np.float32)


Metadata = Callable[[list[int]], list[dict[str, Any] | None]]
"""Image ids -> their metadata rows (owner_id, private, dup_group), None for an image without any."""


def rerank(ids: np.ndarray, scores: np.ndarray, meta: list[dict[str, Any] | None], k: int,
           exclude_owners: Iterable[int] = ()) -> list[tuple[int, float]]:
    """The final top ``k`` of one query's neighbours (best first): no private image, no blocked owner,
    one image per near-duplicate group. An image without metadata is public and its own group."""
    blocked = set(exclude_owners)
    out: list[tuple[int, float]] = []
    groups: set[int] = set()
    for image, score, row in zip(ids.tolist(), scores.tolist(), meta, strict=True):
        if image < 0:
            continue
        row = row or {}
        if row.get("private") == 1 or row.get("owner_id") in blocked:
            continue
        group = row.get("dup_group")
        group = image if group is None else int(group)
        if group in groups:
            continue
        groups.add(group)
        out.append((int(image), float(score)))
        if len(out) == k:
            break
    return out


@dataclass
class VisualSearch:
    """The model the registry holds and the service loads."""

    embedder: Embedder
    index: AnnIndex | None
    """None until the index step builds it."""
    labels: dict[int, str]
    fmt: ImageFormat
    oversample: int = 4
    added: list[dict[str, Any]] = field(default_factory=list)
    """One entry per incremental add (images, when): the index's history since the last full build."""

    def search(self, images: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw ANN neighbours (ids, cosine) of each query image: retrieval before re-ranking."""
        if self.index is None:
            raise RuntimeError("the model has no index yet: run the index step")
        return self.index.search(self.embedder(images), k)

    def query(self, image: np.ndarray, k: int, metadata: Metadata, exclude_owners: Iterable[int] = ()
              ) -> list[tuple[int, float, str | None]]:
        """One query image -> the re-ranked top ``k`` as (image id, cosine, label)."""
        exclude_owners = tuple(exclude_owners)
        ids, scores = self.search(image[None], self.oversample * k + len(exclude_owners))
        row_ids = [int(i) for i in ids[0] if i >= 0]
        top = rerank(ids[0], scores[0], metadata(row_ids) + [None] * (len(ids[0]) - len(row_ids)), k,
                     exclude_owners)
        return [(i, s, self.labels.get(i)) for i, s in top]

    def add(self, images: np.ndarray, ids: np.ndarray, labels: Iterable[str]) -> np.ndarray:
        """Index new images; ids already in the index are skipped (an add is idempotent). Returns the new ids."""
        ids = np.asarray(ids, np.int64)
        new = np.array([i not in self.labels for i in ids.tolist()], bool)
        if new.any():
            if self.index is None:
                raise RuntimeError("the model has no index yet: run the index step")
            self.index.add(self.embedder(images[new]), ids[new])
            self.labels.update(zip(ids[new].tolist(), np.asarray(list(labels))[new].tolist(), strict=True))
        return ids[new]


def metadata_lookup(table: Mapping[int, dict[str, Any]]) -> Metadata:
    """Offline metadata access (evaluate) over the same feature table Feast serves online."""
    return lambda ids: [table.get(i) for i in ids]
