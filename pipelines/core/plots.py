"""The one chart every case's report draws: each system's headline metrics side by side.

Lazy matplotlib (Agg): the figure is made inside ``evaluate`` and saved by the core (``Report.plots``);
the rows go to ``Report.plot_data`` for ``dvc plots``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def systems_chart(systems: Mapping[str, Mapping[str, float]], names: Sequence[str], bars: Sequence[str],
                  title: str, rows_of: Sequence[str] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """(grouped bar figure of ``bars`` per system in ``names``, plot rows of ``rows_of`` or ``bars``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(7.0, 1.4 * len(names) + 2), 4))
    x = np.arange(len(names))
    width = 0.8 / len(bars)
    for i, m in enumerate(bars):
        ax.bar(x + (i - (len(bars) - 1) / 2) * width, [systems[n][m] for n in names], width=width, label=m)
    ax.set_xticks(x, names, rotation=20 if len(names) > 4 else 0)
    ax.set(title=title)
    ax.legend()
    rows = [{"system": n, **{m: systems[n][m] for m in (rows_of or bars)}} for n in names]
    return fig, rows
