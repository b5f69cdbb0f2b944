"""The simulated image platform of visual search: real digit images, uploads, camera-shot queries, clicks.

The catalog is scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, shipped in the wheel:
nothing is downloaded), upsampled to the configured size. Each image gets an owner (Zipf-like: a few
owners upload most), an upload time in the window and a privacy flag; a share of catalog images is
re-uploaded by another owner with a little noise (the near-duplicates re-ranking collapses). Queries are
held-out digits, never in the catalog, seen through a *camera*: a random rotation, zoom, shift, contrast
change and sensor noise, as a photo of a printed image would be. Relevance is the digit class.

Users click on results with position bias and relevance: ``P(click) = examine(position) * (0.6 if same
class else 0.05)``, so the monitor can report CTR. ``drift`` shifts the queries: a stronger camera and
inverted contrast (photos taken under different light), which the monitored query statistics show.

The camera is scipy's ``ndimage`` with its own ranges, separate from the encoder's training augmentations
(``pipelines.visual_search.encoder``): the model never sees this code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from pipelines.world.population import EPOCH, zipf_weights

IMAGES_PER_SCALE = {"tiny": 700, "small": 1797, "large": 1797}
"""Digits used; ``large`` adds ``LARGE_VARIANTS`` camera variants of each catalog image as more uploads."""
LARGE_VARIANTS = 3
QUERY_SHARE = 0.2
REUPLOAD_SHARE = 0.04
PRIVATE_SHARE = 0.05
CLICK_RELEVANT, CLICK_IRRELEVANT = 0.6, 0.05


def examine(position: np.ndarray) -> np.ndarray:
    """Position bias: the chance a user looks at the result in ``position`` (1-based)."""
    return 1.0 / np.log2(np.asarray(position, float) + 1.0)


def click_probability(position: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    return examine(position) * np.where(np.asarray(relevant, bool), CLICK_RELEVANT, CLICK_IRRELEVANT)


def digits(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits as (n, size, size) floats in [0, 1] and their labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    raw = (data.images / 16.0 * 255).astype(np.uint8)
    out = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR), np.float32)
                    for im in raw]) / 255.0
    return out, data.target.astype(np.int64)


def camera(images: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Photograph each image: rotation, zoom, shift, contrast and noise scaled by ``strength`` (0..1)."""
    from scipy import ndimage

    n, size, _ = images.shape
    out = np.empty_like(images)
    centre = (size - 1) / 2
    for i in range(n):
        angle = np.deg2rad(rng.uniform(-20, 20) * strength)
        zoom = 1.0 + rng.uniform(-0.15, 0.15) * strength
        shift = rng.uniform(-0.12, 0.12, 2) * size * strength
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / zoom
        offset = centre - rot @ (np.array([centre, centre]) + shift)
        out[i] = ndimage.affine_transform(images[i], rot, offset=offset, order=1, mode="constant")
    contrast = 1.0 + rng.uniform(-0.3, 0.1, (n, 1, 1)) * strength
    noise = rng.normal(0, 0.08 * strength, out.shape)
    return np.clip(out * contrast + noise, 0, 1).astype(np.float32)


@dataclass(frozen=True)
class VisualSearchWorld:
    """One seeded world: which digits are catalog and which are queries, and every window's uploads."""

    seed: int
    scale: str
    size: int
    camera_strength: float = 0.8

    @cached_property
    def _data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images, labels, is_query) of the digits this scale uses, split stratified by class."""
        images, labels = digits(self.size)
        rng = np.random.default_rng(self.seed)
        keep = np.sort(rng.permutation(len(labels))[:IMAGES_PER_SCALE[self.scale]])
        images, labels = images[keep], labels[keep]
        is_query = np.zeros(len(labels), bool)
        for c in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == c))
            is_query[rows[: round(QUERY_SHARE * len(rows))]] = True
        return images, labels, is_query

    def window(self, start_day: int, n_days: int, drift: float = 0.0) -> tuple[np.ndarray, pd.DataFrame]:
        """One window's images (n, size, size) and their rows (image_id, label, split, owner, ...).

        The first window (day 0) uploads the catalog and searches every held-out digit once; a later
        window searches them again through a new camera shot (drifted by ``drift``), uploading nothing.
        """
        images, labels, is_query = self._data
        rng = np.random.default_rng([self.seed, start_day, int(drift * 1000)])
        strength = min(1.0, self.camera_strength + 0.4 * drift)
        q_idx = np.flatnonzero(is_query)
        queries = camera(images[q_idx], rng, strength)
        if drift > 0:  # a share of the photos comes out inverted (negative film, a dark screen)
            flip = rng.random(len(queries)) < 0.5 * drift
            queries[flip] = 1.0 - queries[flip]
        parts = [(queries, labels[q_idx], "query", np.full(len(q_idx), strength))]
        if start_day == 0:
            c_idx = np.flatnonzero(~is_query)
            cat, cat_labels = images[c_idx], labels[c_idx]
            if self.scale == "large":
                variants = [camera(cat, rng, 0.5) for _ in range(LARGE_VARIANTS)]
                cat = np.concatenate([cat, *variants])
                cat_labels = np.tile(cat_labels, LARGE_VARIANTS + 1)
            again = rng.choice(len(cat), int(REUPLOAD_SHARE * len(cat)), replace=False)
            reup = np.clip(cat[again] + rng.normal(0, 0.02, cat[again].shape), 0, 1).astype(np.float32)
            parts.insert(0, (np.concatenate([cat, reup]), np.concatenate([cat_labels, cat_labels[again]]),
                             "catalog", np.zeros(len(cat) + len(again))))
        pixels = np.concatenate([p[0] for p in parts])
        n = len(pixels)
        n_owners = max(20, n // 8)
        base = 1 + (start_day * 1_000_003)  # ids of later windows never collide with earlier ones
        rows = pd.DataFrame({
            "image_id": np.arange(base, base + n, dtype=np.int64),
            "label": np.concatenate([p[1] for p in parts]).astype(str),
            "split": np.concatenate([[p[2]] * len(p[0]) for p in parts]),
            "owner_id": rng.choice(n_owners, n, p=zipf_weights(n_owners, 1.1, rng)).astype(np.int64) + 1,
            "upload_ts": EPOCH + pd.to_timedelta(start_day + rng.uniform(0, n_days, n), unit="D"),
            "private": (rng.random(n) < PRIVATE_SHARE).astype(np.int64),
            "camera_strength": np.concatenate([p[3] for p in parts]).astype(float),
        })
        return pixels, rows

    def clicks(self, positions: np.ndarray, relevant: np.ndarray, salt: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Simulated users' clicks on shown results: (clicked 0/1, true click probability)."""
        p = click_probability(positions, relevant)
        rng = np.random.default_rng([self.seed, 7, salt])
        return (rng.random(len(p)) < p).astype(np.int64), p
