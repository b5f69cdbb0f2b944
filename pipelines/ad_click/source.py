"""Where ad-click data comes from: the simulator, one time window at a time."""

from __future__ import annotations

import pandas as pd

from pipelines.core.case import Run
from pipelines.world.ad_click import AdClickWorld
from pipelines.world.population import SCALES


def simulate(run: Run, start_day: int, n_days: int, drift: float = 0.0) -> dict[str, pd.DataFrame]:
    """Tables of one window. Labels are complete: a window is pulled once its attribution window closed."""
    return AdClickWorld(seed=run.params.seed, scale=SCALES[run.params.scale]).window(start_day, n_days, drift)
