"""Where visual_search images come from: the simulated digit platform, or a folder of your images.

A folder is the usual class-subfolder layout, ``DIR/<label>/<image>``, in any format, size or mode
Pillow reads (PNG, JPEG, GIF, BMP, TIFF, WebP, ...); each image is converted to the configured size and
channels. Files directly in ``DIR`` are labelled ``unlabelled``. Each file is checked on its own:
an empty, unreadable or truncated file, absurd dimensions, or an exact duplicate of an earlier file
(same bytes) is quarantined with its reason in ``quarantine/visual_search/images/<batch>/rejected.json``
(beside a copy of the file), and the rest go on. A held-out share of each class (``file.query_share``,
chosen by content hash, so stable) becomes the queries; the rest is the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.core.case import Run
from pipelines.core.io import copy_atomic, write_json
from pipelines.visual_search.images import BadImage, ImageFormat, content_hash, decode, to_png_b64

UNLABELLED = "unlabelled"


def image_format(run: Run) -> ImageFormat:
    return ImageFormat(run.params.image.size, run.params.image.channels)


def simulate(run: Run, start_day: int, n_days: int, drift: float = 0.0) -> dict[str, pd.DataFrame]:
    """One window of the digit platform as the ``images`` table."""
    from pipelines.world.visual_search import VisualSearchWorld

    fmt = image_format(run)
    world = VisualSearchWorld(run.params.seed, run.params.scale, fmt.size)
    pixels, rows = world.window(start_day, n_days, drift)
    arrays = np.repeat(pixels[:, None], fmt.channels, axis=1)
    png = [to_png_b64(a) for a in arrays]
    return {"images": rows.assign(width=fmt.size, height=fmt.size, png=png,
                                  sha256=[content_hash(p.encode()) for p in png])[list(_COLUMNS)]}


_COLUMNS = ("image_id", "owner_id", "label", "split", "upload_ts", "private", "width", "height", "sha256", "png",
            "camera_strength")


@dataclass(frozen=True)
class Scanned:
    """A folder's usable images as table rows (without a split) and the files refused, with why."""

    rows: pd.DataFrame
    rejected: list[dict[str, Any]]


def image_id(sha256: str) -> int:
    """An image's id from its content: the same image gets the same id in every batch and every add."""
    return int(sha256[:15], 16) + 1


def scan_folder(folder: Path, fmt: ImageFormat, max_pixels: int) -> Scanned:
    """Every file under ``folder`` (one level of class subfolders), checked one by one."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"images folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    rows, rejected, seen = [], [], {}
    for path in files:
        rel = path.relative_to(folder)
        label = rel.parts[0] if len(rel.parts) > 1 else UNLABELLED
        data = path.read_bytes()
        digest = content_hash(data)
        try:
            if digest in seen:
                raise BadImage(f"exact duplicate of {seen[digest]}")
            arr = decode(data, fmt, max_pixels)
            with Image.open(path) as im:
                width, height = im.size
        except BadImage as exc:
            rejected.append({"file": str(rel), "reason": str(exc), "bytes": len(data)})
            continue
        seen[digest] = str(rel)
        rows.append({"image_id": image_id(digest), "owner_id": 0, "label": label,
                     "upload_ts": pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC"), "private": 0,
                     "width": width, "height": height, "sha256": digest, "png": to_png_b64(arr)})
    frame = pd.DataFrame(rows, columns=[c for c in _COLUMNS if c not in ("split", "camera_strength")])
    return Scanned(frame.astype({"image_id": "int64", "owner_id": "int64", "private": "int64", "width": "int64",
                                 "height": "int64"}), rejected)


def quarantine_rejects(run: Run, folder: Path, scanned: Scanned, batch: str) -> Path | None:
    """Keep each refused file and the reasons: nothing is dropped silently."""
    if not scanned.rejected:
        return None
    where = run.paths.quarantine(run.case) / "images" / batch
    for r in scanned.rejected:
        copy_atomic(Path(folder) / r["file"], where / r["file"])
    return write_json({"folder": str(folder), "rejected": scanned.rejected}, where / "rejected.json")


def read_files(run: Run, files: Mapping[str, Path]) -> dict[str, pd.DataFrame]:
    """The folder as the ``images`` table: catalog and held-out queries per class."""
    from pipelines.core.flowset import file_batch_id

    folder = Path(files["images"])
    scanned = scan_folder(folder, image_format(run), run.params.serving.max_pixels)
    quarantine_rejects(run, folder, scanned, file_batch_id(files))
    rows = scanned.rows
    if rows.empty:
        raise ValueError(f"no usable image in {folder}: every file was refused "
                         f"(see {run.paths.quarantine(run.case) / 'images'})")
    # By content hash within each class: a stable, seed-free held-out share.
    rank = rows.groupby("label")["sha256"].rank(method="first", pct=True)
    big = rows.groupby("label")["label"].transform("size") >= 2
    split = np.where(big & (rank <= run.params.file.query_share), "query", "catalog")
    return {"images": rows.assign(split=split)[[c for c in _COLUMNS if c != "camera_strength"]]}
