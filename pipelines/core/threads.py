"""Torch's intra-op thread count for a block, restored after: reproducible training on a shared machine.

Multi-threaded CPU reductions are not bit-reproducible (the order of partial sums follows the thread
count), so a model trained in the test process and one trained in a rerun's subprocess can differ; and on
a shared 2-core machine a second thread only waits for a busy core. Training runs on one thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Cap torch's intra-op threads at ``n`` for the block (never raise them), then restore them."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n, old)))
    try:
        yield
    finally:
        torch.set_num_threads(old)
