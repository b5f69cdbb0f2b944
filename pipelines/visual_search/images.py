"""Image bytes <-> model arrays, shared by ingest, training and the service (no train/serve skew).

Every image, from a folder, the simulator or an upload, goes through ``decode``: Pillow opens it (any
format it reads), refuses absurd dimensions before decoding pixels (a decompression bomb is a small file
with a huge header), converts the mode to the configured channels and resizes to the configured square
size. Tables carry the normalised image as base64 PNG (lossless, a few hundred bytes at 16x16), so a
validated batch is self-contained and the gate can check it like any other table.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass

import numpy as np

MAX_SIDE = 10_000
"""Pixels per side above which an image is refused before its pixels are decoded."""
MIN_SIDE = 1


class BadImage(ValueError):
    """An image that cannot be used; the message says why (it becomes a quarantine reason or a 4xx)."""


@dataclass(frozen=True)
class ImageFormat:
    """What the model sees: a ``size`` x ``size`` square with ``channels`` (1 grey, 3 RGB)."""

    size: int
    channels: int

    @property
    def mode(self) -> str:
        return "L" if self.channels == 1 else "RGB"


def decode(data: bytes, fmt: ImageFormat, max_pixels: int = MAX_SIDE * MAX_SIDE) -> np.ndarray:
    """Image file bytes -> (channels, size, size) float32 in [0, 1]; ``BadImage`` says what is wrong."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE) or w * h > max_pixels:
                raise BadImage(f"absurd dimensions {w}x{h} (at most {MAX_SIDE} per side, {max_pixels:,} pixels)")
            im.load()
            return to_array(im, fmt)
    except UnidentifiedImageError:
        raise BadImage("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        if isinstance(exc, BadImage):
            raise
        raise BadImage(f"unreadable image: {exc}") from None
    except Image.DecompressionBombError as exc:
        raise BadImage(f"absurd dimensions: {exc}") from None


def to_array(im: object, fmt: ImageFormat) -> np.ndarray:
    """A PIL image in any mode -> the model's array (transparency is composited on black)."""
    from PIL import Image

    assert isinstance(im, Image.Image)
    if im.mode in ("RGBA", "LA", "P", "PA"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(background, im)
    im = im.convert(fmt.mode).resize((fmt.size, fmt.size), Image.Resampling.BILINEAR)
    arr = np.asarray(im, np.float32) / 255.0
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def to_png_b64(arr: np.ndarray) -> str:
    """(channels, h, w) in [0, 1] -> base64 PNG: how tables carry a normalised image."""
    from PIL import Image

    pixels = np.clip(np.rint(np.asarray(arr) * 255), 0, 255).astype(np.uint8)
    im = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def from_png_b64(values: list[str] | np.ndarray, fmt: ImageFormat) -> np.ndarray:
    """A column of base64 PNGs -> (n, channels, size, size) float32."""
    if not len(values):
        return np.zeros((0, fmt.channels, fmt.size, fmt.size), np.float32)
    return np.stack([decode(base64.b64decode(v), fmt) for v in values])


def content_hash(data: bytes) -> str:
    """Exact-duplicate key of an image file."""
    return hashlib.sha256(data).hexdigest()


def near_duplicate_groups(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """Group ids (the smallest row of each group) of rows whose cosine similarity reaches ``threshold``.

    Faiss' range search finds the close pairs without the n x n matrix; union-find joins them, so a
    chain of re-uploads lands in one group.
    """
    import faiss

    x = np.ascontiguousarray(vectors, np.float32).reshape(len(vectors), -1)
    x = x - x.mean(axis=1, keepdims=True)  # brightness-invariant: a re-upload may be lighter
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    lims, _, rows = index.range_search(x, threshold)
    parent = np.arange(len(x))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(x)):
        for j in rows[lims[i]:lims[i + 1]]:
            a, b = root(i), root(int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(len(x))], np.int64)
