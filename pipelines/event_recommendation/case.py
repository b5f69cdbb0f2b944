"""Event recommendation (the book's chapter 7), declared for the core.

Always-new events ranked for a user by a pointwise LightGBM ranker on batch features and Feast on-demand
request-time features (distance, hours until start, day/hour fit), behind a rule filter (radius, the
next days, not full, not registered); baseline: the nearest upcoming events.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pipelines.core.case import (
    CaseParams,
    CaseSpec,
    Features,
    Metric,
    Params,
    Plot,
    ServingParams,
    Source,
    StepParams,
    lazy,
)
from pipelines.event_recommendation.schema import TABLES

K = 10
"""The list length the headline metric is taken at (``k`` in params.yaml must match it)."""


class Split(Params):
    """Time-based: train on the past, early-stop on the next day(s), test on the last days."""

    valid_days: int = Field(ge=1)
    test_days: int = Field(ge=1)


class Ranker(Params):
    lightgbm: dict[str, Any] = Field(default_factory=dict, description="LightGBM params over the defaults")


class Serving(ServingParams):
    max_k: int = Field(50, ge=1, le=500)
    radius_km: float = Field(30.0, gt=0, le=20_000, description="default radius of the rule filter")
    max_radius_km: float = Field(200.0, gt=0, le=20_040, description="largest radius a request may ask for")
    days: float = Field(7.0, gt=0, le=60, description="default horizon: events starting in the next N days")
    max_days: float = Field(30.0, gt=0, le=365, description="largest horizon a request may ask for")
    max_candidates: int = Field(5_000, ge=1, description="events scored at most per request (nearest kept)")


class EventParams(CaseParams):
    register_prior: float = Field(gt=0, lt=1, description="prior registration rate for smoothing rate features")
    split: Split
    k: Literal[10] = K
    ranker: Ranker = Ranker()
    serving: Serving = Serving()


CASE = CaseSpec(
    name="event_recommendation",
    title="Event recommendation",
    metric=Metric(f"ndcg@{K}", lower_is_better=False),
    params=EventParams,
    tables=TABLES,
    source=Source(simulate=lazy("pipelines.event_recommendation.source:simulate")),
    features=Features(build=lazy("pipelines.event_recommendation.features:build"), service="event_recommendation_v1"),
    train=lazy("pipelines.event_recommendation.pipeline:train"),
    evaluate=lazy("pipelines.event_recommendation.pipeline:evaluate"),
    score_window=lazy("pipelines.event_recommendation.pipeline:score_window"),
    smoke_test=lazy("pipelines.event_recommendation.pipeline:smoke_test"),
    step_params=StepParams(features=("register_prior",), train=("split", "ranker"), evaluate=("k",)),
    serving_packages=("scikit-learn", "scipy", "lightgbm"),
    plots=(Plot("systems", x=f"ndcg@{K}", y="system", title=f"event_recommendation nDCG@{K} by system (test window)",
                template="bar_horizontal"),),
    schedule_minute=45,
)
