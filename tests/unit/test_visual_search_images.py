"""visual_search's image handling: decoding any input, refusing bad files with a reason, duplicates, re-ranking."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.visual_search.images import (
    BadImage,
    ImageFormat,
    decode,
    from_png_b64,
    near_duplicate_groups,
    to_png_b64,
)
from pipelines.visual_search.model import rerank
from pipelines.visual_search.source import scan_folder

FMT = ImageFormat(16, 1)


def _png(size: tuple[int, int] = (40, 30), mode: str = "RGB", fmt: str = "PNG", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8).squeeze()
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("mode", "fmt"), [("RGB", "PNG"), ("RGBA", "PNG"), ("L", "JPEG"), ("RGB", "GIF")])
def test_any_mode_and_size_becomes_the_configured_array(mode: str, fmt: str) -> None:
    out = decode(_png(mode=mode, fmt=fmt), FMT)
    assert out.shape == (1, 16, 16) and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1
    assert decode(_png(mode=mode, fmt=fmt), ImageFormat(8, 3)).shape == (3, 8, 8)


@pytest.mark.parametrize(("data", "reason"), [(b"", "empty"), (b"hello, not an image", "not an image"),
                                              (_png()[:60], "unreadable")])
def test_bad_bytes_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BadImage, match=reason):
        decode(data, FMT)


def test_absurd_dimensions_are_refused_before_decoding() -> None:
    with pytest.raises(BadImage, match="absurd dimensions"):
        decode(_png((200, 200)), FMT, max_pixels=100 * 100)


def test_png_round_trip_is_lossless_at_8_bits() -> None:
    arr = decode(_png(), FMT)
    assert np.allclose(from_png_b64([to_png_b64(arr)], FMT)[0], arr, atol=1 / 255)


def test_near_duplicates_share_a_group_and_others_do_not() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 64))
    x = np.stack([a, a + 0.01 * rng.random(64), b, a * 0.9 + 0.05])  # a re-upload, another image, a lighter copy
    groups = near_duplicate_groups(x, 0.97)
    assert groups[0] == groups[1] == groups[3] == 0 and groups[2] == 2


def test_rerank_drops_private_and_blocked_and_collapses_duplicates() -> None:
    ids = np.array([1, 2, 3, 4, 5, -1])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.0])
    meta = [{"private": 0, "owner_id": 7, "dup_group": 1}, {"private": 0, "owner_id": 8, "dup_group": 1},
            {"private": 1, "owner_id": 8, "dup_group": 3}, {"private": 0, "owner_id": 9, "dup_group": 4}, None, None]
    assert [i for i, _ in rerank(ids, scores, meta, 10)] == [1, 4, 5]
    assert [i for i, _ in rerank(ids, scores, meta, 10, exclude_owners=[7])] == [2, 4, 5]
    assert [i for i, _ in rerank(ids, scores, meta, 1)] == [1]


def test_a_folder_scan_quarantines_each_bad_file_with_its_reason_and_keeps_the_rest(tmp_path: Path) -> None:
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
    (tmp_path / "cat" / "a.png").write_bytes(_png(seed=1))
    (tmp_path / "cat" / "copy.png").write_bytes(_png(seed=1))
    (tmp_path / "dog" / "b.jpg").write_bytes(_png(mode="L", fmt="JPEG", seed=2))
    (tmp_path / "dog" / "empty.png").write_bytes(b"")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / "cut.png").write_bytes(_png(seed=3)[:80])
    scanned = scan_folder(tmp_path, FMT, max_pixels=10**6)
    assert sorted(scanned.rows["label"]) == ["cat", "dog"]
    reasons = {r["file"]: r["reason"] for r in scanned.rejected}
    assert set(reasons) == {"cat/copy.png", "dog/empty.png", "dog/notes.txt", "dog/cut.png"}
    assert "exact duplicate of cat/a.png" in reasons["cat/copy.png"] and "empty" in reasons["dog/empty.png"]
    assert scanned.rows["image_id"].is_unique and (scanned.rows["image_id"] > 0).all()


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_folder(tmp_path / "nope", FMT, 10**6)
