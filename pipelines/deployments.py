"""Importable Prefect flows for the scheduled deployments in ``prefect.yaml``.

A deployment's entrypoint must be a module-level flow object, while a case's ``<case>_flow`` function
builds its flow per call (so the CLI can pass steps, scale and seed). Each flow here is that
entrypoint for every case study (the case is a parameter of the deployment): it calls the case's flow
set, which runs as its subflow, so the schedule, the parameters and every step show up in the Prefect
UI as one tree.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow
from pydantic import Field

from pipelines.core.cases import get
from pipelines.core.flow import STEPS
from pipelines.core.settings import apply_privacy_defaults

# Retraining is the flow set up to and including deploy; monitoring is what triggers it off schedule.
RETRAIN_STEPS = [s for s in STEPS if s != "monitor"]
Scale = Literal["tiny", "small", "large"]  # pipelines/world/population.py:SCALES, a choice list in the UI
CaseName = Literal["ad_click", "video_recommendation"]  # pipelines/core/cases.py:CASES


@flow(name="casebook-monitor", log_prints=True)
def monitor(case: CaseName, drift: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0, scale: Scale | None = None,
            seed: Annotated[int, Field(ge=0)] | None = None) -> dict[str, Any]:
    """Score the next window of traffic with the champion and report drift; an alarm retrains and redeploys.

    ``scale`` and ``seed`` (default: params.yaml) must name the world the champion was trained on.
    """
    apply_privacy_defaults()
    return get(case).load_flow()(steps=["monitor"], scale=scale, seed=seed, drift=drift)


@flow(name="casebook-retrain", log_prints=True)
def retrain(case: CaseName, scale: Scale | None = None,
            seed: Annotated[int, Field(ge=0)] | None = None) -> dict[str, Any]:
    """Ingest, validate, features, train, evaluate and deploy; deploy promotes only a better challenger.

    ``scale`` and ``seed`` default to params.yaml. Steps whose inputs did not change are served from
    their cache, so a retrain on unchanged data costs little and promotes nothing.
    """
    apply_privacy_defaults()
    return get(case).load_flow()(steps=RETRAIN_STEPS, scale=scale, seed=seed)
