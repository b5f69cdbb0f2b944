"""The image encoder, trained contrastively without labels (SimCLR), and its supervised reference.

SimCLR (Chen et al., 2020): two random augmentations of each catalog image are two *views*; a small CNN
embeds both, a projection head maps them to the loss space, and NT-Xent (normalised temperature-scaled
cross entropy) pulls the two views of an image together and pushes the other 2N-2 images of the batch
away. What the encoder learns to ignore is exactly what the augmentations change, so they encode the
invariances a visual search needs. Augmentations (plain torch, on a batch at once; no torchvision):

- random affine: rotation up to ``rotate_deg``, zoom in ``[1 - zoom, 1 + zoom]``, shift up to ``shift``
  of the side (``affine_grid`` + ``grid_sample``: the crop-and-resize of SimCLR for tiny images);
- contrast and brightness jitter, Gaussian sensor noise, and a random erased square (cutout);
- no flips: a mirrored 2 is not a 2, and photos of an image are not mirrored.

The supervised reference trains the same CNN with a classification head on the labels: an upper bound,
never the served model. Embeddings are L2-normalised, so inner product = cosine similarity (Faiss IP).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipelines.core.threads import torch_threads


@dataclass(frozen=True)
class Augment:
    rotate_deg: float = 25.0
    zoom: float = 0.2
    shift: float = 0.15
    contrast: float = 0.4
    noise: float = 0.1
    erase: float = 0.3


@dataclass(frozen=True)
class EncoderParams:
    dim: int = 64
    width: int = 32
    steps: int = 360
    batch_size: int = 128
    lr: float = 0.003
    temperature: float = 0.2
    augment: Augment = Augment()
    seed: int = 0


def augment(x: torch.Tensor, a: Augment, gen: torch.Generator) -> torch.Tensor:
    """One random view of each image in the batch (n, c, h, w), values in [0, 1]."""
    n = x.shape[0]

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=gen)

    angle = u(-1, 1) * math.radians(a.rotate_deg)
    scale = u(1 - a.zoom, 1 + a.zoom)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, u(-1, 1) * 2 * a.shift], 1),
                         torch.stack([sin, cos, u(-1, 1) * 2 * a.shift], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    v = v * u(1 - a.contrast, 1 + a.contrast / 2, 1, 1, 1) + u(-0.1, 0.1, 1, 1, 1)
    v = v + a.noise * torch.rand(n, 1, 1, 1, generator=gen) * torch.randn(v.shape, generator=gen)
    h, w = x.shape[-2:]
    side = max(1, int(h * a.erase))
    top = torch.randint(0, h - side + 1, (n,), generator=gen)
    left = torch.randint(0, w - side + 1, (n,), generator=gen)
    rows, cols = torch.arange(h)[None, :, None], torch.arange(w)[None, None, :]
    box = ((rows >= top[:, None, None]) & (rows < top[:, None, None] + side)
           & (cols >= left[:, None, None]) & (cols < left[:, None, None] + side))
    keep = ~(box & (torch.rand(n, 1, 1, generator=gen) < 0.5))
    return (v * keep[:, None]).clamp(0, 1)


class Encoder(nn.Module):
    """A small CNN: three stride-2 conv blocks and global average pooling -> a ``dim`` embedding.

    The first block already halves the side: a 16-pixel image of an 8x8 digit carries no detail at full
    resolution, and the cheaper stem trains ~3x faster on the CPU for the same width.
    """

    def __init__(self, channels: int, width: int, dim: int) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.body = nn.Sequential(block(channels, width, 2), block(width, width * 2, 2), block(width * 2, width * 4, 2),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width * 4, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view's positive is the other view of its image, among all 2N-1 others."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def _batches(n: int, size: int, steps: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` batches of shuffled epochs: a fixed compute budget, whatever the catalog's size."""
    size = min(size, n)
    done = 0
    while done < steps:
        order = torch.randperm(n, generator=gen)
        for i in range(0, n - size + 1, size):
            if done == steps:
                return
            yield order[i:i + size]
            done += 1


def train_contrastive(images: np.ndarray, p: EncoderParams) -> Encoder:
    """SimCLR on unlabelled images (n, c, h, w); returns the encoder (the projection head is dropped).

    One torch thread: the same data and seed give the same encoder in any process (a resumed run's too).
    """
    with torch_threads(1):
        return _train_contrastive(images, p)


def _train_contrastive(images: np.ndarray, p: EncoderParams) -> Encoder:
    torch.manual_seed(p.seed)
    gen = torch.Generator().manual_seed(p.seed)
    x = torch.from_numpy(np.ascontiguousarray(images, np.float32))
    encoder = Encoder(x.shape[1], p.width, p.dim)
    head = nn.Sequential(nn.Linear(p.dim, p.dim), nn.ReLU(), nn.Linear(p.dim, p.dim))
    params = [*encoder.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p.lr, total_steps=p.steps)
    encoder.train()
    for idx in _batches(len(x), p.batch_size, p.steps, gen):
        batch = x[idx]
        loss = nt_xent(head(encoder(augment(batch, p.augment, gen))),
                       head(encoder(augment(batch, p.augment, gen))), p.temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return encoder.eval()


def train_supervised(images: np.ndarray, labels: np.ndarray, p: EncoderParams) -> Encoder:
    """The upper reference: the same CNN and augmentations, trained with the labels (cross entropy)."""
    with torch_threads(1):
        return _train_supervised(images, labels, p)


def _train_supervised(images: np.ndarray, labels: np.ndarray, p: EncoderParams) -> Encoder:
    torch.manual_seed(p.seed)
    gen = torch.Generator().manual_seed(p.seed)
    x = torch.from_numpy(np.ascontiguousarray(images, np.float32))
    classes, y = np.unique(labels, return_inverse=True)
    target = torch.from_numpy(y.astype(np.int64))
    encoder = Encoder(x.shape[1], p.width, p.dim)
    head = nn.Linear(p.dim, len(classes))
    opt = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=p.lr, weight_decay=1e-4)
    encoder.train()
    for idx in _batches(len(x), p.batch_size, max(1, p.steps // 2), gen):
        loss = F.cross_entropy(head(F.normalize(encoder(augment(x[idx], p.augment, gen)), dim=1) * 10), target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return encoder.eval()


@torch.inference_mode()
def embed(encoder: Encoder, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """L2-normalised embeddings of (n, c, h, w) images, float32."""
    x = torch.from_numpy(np.ascontiguousarray(images, np.float32))
    parts = [F.normalize(encoder(x[i:i + batch]), dim=1) for i in range(0, len(x), batch)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, encoder.body[-1].out_features), np.float32)
