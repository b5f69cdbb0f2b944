"""Where event_recommendation data comes from: the simulator, one window at a time."""

from __future__ import annotations

import pandas as pd

from pipelines.core.case import Run
from pipelines.world.event import EventWorld
from pipelines.world.population import SCALES


def world(run: Run) -> EventWorld:
    return EventWorld(seed=run.params.seed, scale=SCALES[run.params.scale])


def simulate(run: Run, start_day: int, n_days: int, drift: float = 0.0) -> dict[str, pd.DataFrame]:
    """Tables of one simulated window; registrations are known when the window is pulled."""
    return world(run).window(start_day, n_days, drift)
