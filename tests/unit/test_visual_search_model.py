"""visual_search's encoder parts and the served model's incremental add."""

from __future__ import annotations

import numpy as np
import torch

from pipelines.core.ann import AnnIndex
from pipelines.visual_search.encoder import Augment, augment, nt_xent
from pipelines.visual_search.images import ImageFormat
from pipelines.visual_search.model import Embedder, VisualSearch


def test_augment_keeps_shape_and_range_and_differs_per_view() -> None:
    x = torch.rand(8, 1, 16, 16)
    gen = torch.Generator().manual_seed(0)
    a, b = augment(x, Augment(), gen), augment(x, Augment(), gen)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1 and not torch.allclose(a, b)


def test_nt_xent_is_low_when_views_agree_and_high_when_they_do_not() -> None:
    z = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    assert nt_xent(z, torch.randn(16, 8), 0.1) > nt_xent(z, z, 0.1)


def test_an_add_keeps_existing_ids_and_makes_new_images_retrievable() -> None:
    rng = np.random.default_rng(0)
    fmt = ImageFormat(4, 1)
    catalog = rng.random((50, 1, 4, 4)).astype(np.float32)
    embed = Embedder("pixels")
    ids = np.arange(1, 51)
    model = VisualSearch(embed, AnnIndex.build(embed(catalog), ids), {int(i): "a" for i in ids}, fmt)
    before, _ = model.search(catalog, 1)
    new = rng.random((5, 1, 4, 4)).astype(np.float32)
    added = model.add(new, np.arange(1000, 1005), ["b"] * 5)
    assert list(added) == list(range(1000, 1005)) and len(model.index) == 55
    found, _ = model.search(new, 1)
    assert list(found[:, 0]) == list(range(1000, 1005))
    after, _ = model.search(catalog, 1)
    assert (after == before).all()
    assert len(model.add(new, np.arange(1000, 1005), ["b"] * 5)) == 0 and len(model.index) == 55  # idempotent
