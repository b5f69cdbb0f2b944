"""visual_search end to end on the tiny world: real outcomes of the encoder, the index and incremental add."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipelines import cases
from pipelines.cli import app
from pipelines.core import registry
from pipelines.core.flowset import open_run, run_case

pytestmark = pytest.mark.integration
CASE = "visual_search"
runner = CliRunner()


@pytest.fixture(scope="module")
def metrics(case_run: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    case_run(CASE)
    return json.loads(open_run(cases.spec(CASE)).paths.metrics(CASE).read_text())


def test_the_contrastive_encoder_beats_raw_pixels_and_pca_without_labels(metrics: dict[str, Any]) -> None:
    s = metrics["systems"]
    for baseline in ("pixels", "pca"):
        assert s["contrastive"]["ndcg@10"] > 1.05 * s[baseline]["ndcg@10"]
        assert s["contrastive"]["mrr@10"] > s[baseline]["mrr@10"]
    assert s["supervised"]["ndcg@10"] >= s["contrastive"]["ndcg@10"]  # the labelled upper reference
    assert s["served"]["simulated_ctr@10"] > s["pixels"]["simulated_ctr@10"]


def test_the_index_step_finds_the_exact_neighbours_and_measures_ivf_pq(metrics: dict[str, Any]) -> None:
    index = metrics["index"]
    assert index["recall@10"] >= 0.95 and index["flat"]["recall@10"] == pytest.approx(1.0)
    assert index["ivf_pq"]["bytes_per_vector"] < index["hnsw"]["bytes_per_vector"] / 4
    assert 0 < index["ivf_pq"]["recall@10"] <= 1


def _write_folder(root: Path, n_per_class: int = 6, offset: int = 0) -> Path:
    rng = np.random.default_rng(offset)
    for label, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            arr = np.clip(np.array(colour) + rng.normal(0, 20, (24 + i, 20, 3)), 0, 255).astype(np.uint8)
            arr[: 5 + i] = 255 if label == "red" else 0
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG" if i % 2 else "JPEG")
            (root / label / f"{offset}_{i}.{'png' if i % 2 else 'jpg'}").write_bytes(buf.getvalue())
    (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return root


def test_a_folder_of_your_images_runs_the_same_flow_and_quarantines_bad_files(
        tmp_path: Path, case_run: Callable[[str], dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    case_run(CASE)  # the session's world stays the home's; the folder gets its own
    folder = _write_folder(tmp_path / "images")
    spec = cases.spec(CASE)
    out = run_case(spec, ["ingest", "validate", "features", "train", "index", "evaluate"], files={"images": folder})
    run = open_run(spec, files={"images": folder})
    assert run.world.id == "file"
    doc = json.loads(run.paths.metrics(CASE).read_text())
    assert doc["coverage"]["queries"] >= 2 and doc["model"]["ndcg@10"] > 0
    rejected = json.loads(next((run.paths.quarantine(CASE) / "images").rglob("rejected.json")).read_text())
    assert [r["file"] for r in rejected["rejected"]] == ["red/broken.png"]
    assert out["evaluate"]["model_tag"].startswith(CASE)


def test_new_images_are_added_without_a_rebuild_and_existing_ids_stay(
        tmp_path: Path, case_run: Callable[[str], dict[str, Any]]) -> None:
    case_run(CASE)
    spec = cases.spec(CASE)
    run = open_run(spec)
    tag, before = registry.load_champion(CASE)
    old_ids = sorted(before.labels)
    folder = _write_folder(tmp_path / "new", n_per_class=3, offset=9)
    added = runner.invoke(app, ["index", CASE, "--add", str(folder)])  # the command a user types
    assert added.exit_code == 0, added.output
    result = json.loads(added.output)
    assert result["added"] == 6 and result["refused"] == 1 and result["index"]["after"] == len(old_ids) + 6
    new_tag, after = registry.load_champion(CASE)
    assert new_tag != tag and set(old_ids) <= set(after.labels)
    from pipelines.visual_search.images import decode

    for label in ("red", "blue"):
        image = decode(next((folder / label).glob("9_1.png")).read_bytes(), after.fmt)
        ids, _ = after.search(image[None], 1)
        assert after.labels[int(ids[0, 0])] == label  # the new image itself comes back first
    catalog = run.validated("images")
    old = catalog[catalog["image_id"].isin(old_ids[:20])]
    from pipelines.visual_search.images import from_png_b64

    got_before, _ = before.search(from_png_b64(old["png"].to_numpy(), before.fmt), 5)
    got_after, _ = after.search(from_png_b64(old["png"].to_numpy(), after.fmt), 5)
    assert (got_after[:, 0] == got_before[:, 0]).all()  # existing images still find themselves first
    again = spec.add_to_index(run, folder)
    assert again["added"] == 0 and again["already_indexed"] == 6


@pytest.mark.parametrize("args, message", [
    (["index", CASE, "--add", "/no/such/folder"], "does not exist"),
    (["index", "ad_click", "--add", "."], "has no incremental index; cases with one: visual_search"),
])
def test_index_add_refuses_what_it_cannot_add_in_one_line(args: list[str], message: str,
                                                          case_run: Callable[[str], dict[str, Any]]) -> None:
    case_run(CASE)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
