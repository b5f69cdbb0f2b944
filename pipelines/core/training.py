"""Training-loop pieces the torch cases share."""

from __future__ import annotations

from typing import Any


class EarlyStopping:
    """Keep the best weights and say when `patience` checks in a row failed to improve the validation score.

    Why: the deep cases overfit within a few epochs, so each keeps its best checkpoint rather than its last;
    one helper keeps that rule (and its tie-breaking `min_delta`) the same everywhere.
    """

    def __init__(self, patience: int, min_delta: float, lower_is_better: bool) -> None:
        self.patience, self.min_delta, self.lower_is_better = patience, min_delta, lower_is_better
        self.best = float("inf") if lower_is_better else float("-inf")
        self.misses = 0
        self._state: dict[str, Any] | None = None

    def check(self, score: float, net: Any) -> bool:
        """Record one validation `score` of `net` (a torch module); True means stop training now."""
        better = (score < self.best - self.min_delta) if self.lower_is_better else (score > self.best + self.min_delta)
        if better:
            self.best, self.misses = score, 0
            self._state = {k: v.clone() for k, v in net.state_dict().items()}
            return False
        self.misses += 1
        return self.misses >= self.patience

    def restore(self, net: Any) -> None:
        """Load the best weights seen back into `net`."""
        if self._state is None:
            raise RuntimeError("EarlyStopping.restore before any check: the loop ran no validation")
        net.load_state_dict(self._state)
