"""Importable Prefect flows for the scheduled deployments in ``prefect.yaml`` (generated from the registry).

A deployment's entrypoint must be a module-level flow object; each flow here is that entrypoint for
every case study (the case is a parameter of the deployment). It runs the case's flow set as its
subflow, so the schedule, the parameters and every step show up in the Prefect UI as one tree.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow
from pydantic import Field

from pipelines import cases
from pipelines.core.flowset import run_case

Scale = Literal["tiny", "small", "large"]  # a choice list in the UI
CaseName = Literal[tuple(cases.CASES)]  # type: ignore[valid-type]  # the registry's names, a choice list too
RETRAIN_EXCLUDES = ("monitor",)
"""Retraining is the flow set up to and including deploy; monitoring is what triggers it off schedule."""


@flow(name="casebook-monitor", log_prints=True)
def monitor(case: CaseName, drift: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0, scale: Scale | None = None,
            seed: Annotated[int, Field(ge=0)] | None = None) -> dict[str, Any]:
    """Score the next window of traffic with the champion and report drift; an alarm retrains and redeploys.

    ``scale`` and ``seed`` (default: params.yaml) name the world the champion was trained on.
    """
    return run_case(cases.spec(case), ["monitor"], scale=scale, seed=seed, drift=drift)


@flow(name="casebook-retrain", log_prints=True)
def retrain(case: CaseName, scale: Scale | None = None,
            seed: Annotated[int, Field(ge=0)] | None = None) -> dict[str, Any]:
    """Ingest through deploy; deploy promotes only a challenger that beats the champion on the same window.

    Steps whose inputs did not change are served from their cache, so a retrain on unchanged data costs
    little and promotes nothing.
    """
    spec = cases.spec(case)
    return run_case(spec, [s for s in spec.steps if s not in RETRAIN_EXCLUDES], scale=scale, seed=seed)
