"""Ad click prediction on social platforms (the book's chapter 8), declared for the core.

What the case adds is its data contract (``schema``), its simulated source (``source``), its Feast
feature tables (``features``), the models (``model``) and the bodies of train, evaluate and monitor
scoring (``pipeline``); ``pipelines.core.flowset`` builds the flow set, stages and contract tests.
"""

from __future__ import annotations

from pydantic import Field

from pipelines.ad_click.schema import TABLES
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


class Split(Params):
    """Time-based: train on the past, validate on the next day(s), test on the last days."""

    valid_days: int = Field(ge=1)
    test_days: int = Field(ge=1)


class Logistic(Params):
    c: float = Field(gt=0, description="inverse L2 strength of the hashed-cross logistic baseline")


class DeepFM(Params):
    embedding_dim: int = Field(ge=1, le=256)
    hidden: tuple[int, ...] = Field(min_length=1)
    dropout: float = Field(ge=0, lt=1)
    lr: float = Field(gt=0)
    lr_embedding: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    embedding_l2: float = Field(ge=0)
    epochs: int = Field(ge=1)
    checks_per_epoch: int = Field(ge=1)
    patience: int = Field(ge=1)
    batch_size: int = Field(ge=1)


class Serving(ServingParams):
    K_LIMIT = "max_candidates"
    max_candidates: int = Field(100, ge=1, le=10_000)


class AdClickParams(CaseParams):
    ctr_prior: float = Field(gt=0, lt=1, description="prior CTR for smoothing CTR features and cold start")
    split: Split
    logistic: Logistic
    deepfm: DeepFM
    serving: Serving = Serving()


CASE = CaseSpec(
    name="ad_click",
    title="Ad click prediction on social platforms",
    metric=Metric("ne", lower_is_better=True),
    params=AdClickParams,
    tables=TABLES,
    source=Source(simulate=lazy("pipelines.ad_click.source:simulate")),
    features=Features(build=lazy("pipelines.ad_click.features:build"), service="ad_click_v1"),
    train=lazy("pipelines.ad_click.pipeline:train"),
    evaluate=lazy("pipelines.ad_click.pipeline:evaluate"),
    score_window=lazy("pipelines.ad_click.pipeline:score_window"),
    smoke_test=lazy("pipelines.ad_click.pipeline:smoke_test"),
    step_params=StepParams(features=("ctr_prior",), train=("ctr_prior", "split", "logistic", "deepfm")),
    serving_packages=("torch", "scikit-learn", "scipy"),
    # .dvc/plots/calibration.json: one line per predictor + the diagonal
    plots=(Plot("calibration", x="predicted", y="observed", title="ad_click calibration (test window)",
                template="calibration"),),
)
