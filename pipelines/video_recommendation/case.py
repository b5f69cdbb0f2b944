"""Homepage video recommendation (the book's chapter 6), declared for the core.

Candidate generation (popularity, trending, demographic popularity, ALS, a two-tower network behind a
Faiss index), a LightGBM ranker and re-ranking; on the simulator or on your own interaction log
(``--source file --interactions PATH [--items PATH]``). The ``index`` step builds the served ANN index.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.core.case import (
    CaseParams,
    CaseSpec,
    Features,
    FileInput,
    Metric,
    Params,
    Plot,
    ServingParams,
    Source,
    Step,
    StepParams,
    lazy,
)
from pipelines.video_recommendation.schema import TABLES

K = 10
"""The list length the headline metric is taken at (``k`` in params.yaml must match it)."""


class FileSource(Params):
    interactions: str | None = Field(None, description="CSV or Parquet: user_id, item_id, timestamp [, rating | event]")
    items: str | None = Field(None, description="optional CSV or Parquet of item attributes")
    min_rating: float = Field(4.0, description="a rating at or above this is a positive")
    positive_events: tuple[str, ...] = ("click", "like", "watch", "purchase", "positive")


class Split(Params):
    """Which interactions train, label the ranker and test (pipelines/video_recommendation/split.py)."""

    kind: Literal["global", "per_user"] | None = Field(
        None, description="global: one time cut; per_user: each user's latest interactions; "
                          "null: per_user for a file, global for the simulator")
    ranker_days: int | None = Field(None, ge=1, description="global: days of the ranker window; null: half "
                                                            "the whole days before the test")
    test_days: int = Field(ge=1, description="global: days of the test window")
    holdout_fraction: float | None = Field(None, gt=0, lt=0.5, description="per_user: each user's latest fraction "
                                                                            "held out (the ranker as much again)")
    holdout_last_n: int | None = Field(None, ge=1, description="per_user: or each user's last N held out")
    min_history: int = Field(10, ge=3, description="per_user: users with fewer interactions train only")

    @model_validator(mode="after")
    def _one_holdout(self) -> Split:
        if (self.holdout_fraction is None) == (self.holdout_last_n is None):
            raise ValueError("set exactly one of split.holdout_fraction and split.holdout_last_n (null the "
                             "other, e.g. --set split.holdout_fraction=null --set split.holdout_last_n=2)")
        if self.holdout_last_n is not None and self.min_history <= 2 * self.holdout_last_n:
            raise ValueError(f"split.min_history={self.min_history} must exceed twice split.holdout_last_n="
                             f"{self.holdout_last_n}: the test and the ranker each hold out that many, and the "
                             "generators need some history left")
        return self


class Window(Params):
    days: float = Field(gt=0)


class Trending(Params):
    recent_days: float = Field(gt=0)
    base_days: float = Field(gt=0)


class DemographicPopular(Params):
    days: float = Field(gt=0)
    strength: float = Field(ge=0)
    keys: tuple[Literal["language", "age_bucket", "gender", "country"], ...] = Field(min_length=1)


class ALS(Params):
    factors: int = Field(ge=1)
    regularization: float | None = Field(None, gt=0, description="null: 0.5 * sqrt(positives)")
    alpha: float = Field(gt=0)
    iterations: int = Field(ge=1)
    demographic_weight: float = Field(ge=0)


class TwoTower(Params):
    dim: int = Field(ge=1)
    hidden: int = Field(ge=1)
    temperature: float = Field(gt=0)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    id_dropout: float = Field(ge=0, lt=1)


class CoVisit(Params):
    shrinkage: float = Field(ge=0, description="shared fans that make two videos look alike (cosine shrinkage)")


class Generators(Params):
    popular: Window
    trending: Trending
    demographic_popular: DemographicPopular
    als: ALS
    two_tower: TwoTower
    co_visit: CoVisit


class Ann(Params):
    m: int = Field(ge=2, le=128)
    ef_construction: int = Field(ge=1)
    ef_search: int = Field(ge=1)


class Ranker(Params):
    objective: Literal["binary", "lambdarank"] = "binary"
    lightgbm: dict[str, Any] = Field(default_factory=dict, description="LightGBM params over the defaults")


class Rerank(Params):
    freshness_weight: float = Field(ge=0)
    freshness_half_life_days: float = Field(gt=0)
    max_per_category: int = Field(ge=1)


class Serving(ServingParams):
    max_k: int = Field(50, ge=1, le=1000)


class VideoParams(CaseParams):
    source: Literal["simulator", "file"] = "simulator"
    file: FileSource = FileSource()
    engagement_prior: float = Field(gt=0, lt=1)
    split: Split
    k: Literal[10] = K
    candidates_per_generator: int = Field(ge=1, le=1000)
    generators: Generators
    ann: Ann
    ranker: Ranker = Ranker()
    rerank: Rerank
    serving: Serving = Serving()

    @model_validator(mode="before")
    @classmethod
    def _split_for_the_source(cls, data: Any) -> Any:
        """An unset ``split.kind`` follows the source: per_user for a real log (its users arrive in bursts, so
        one time cut tests only the few active after it), global for the simulator."""
        split = data.get("split") if isinstance(data, dict) else None
        if isinstance(split, dict) and split.get("kind") is None:
            kind = "per_user" if data.get("source") == "file" else "global"
            data = {**data, "split": {**split, "kind": kind}}
        return data


CASE = CaseSpec(
    name="video_recommendation",
    title="Homepage video recommendation",
    metric=Metric(f"ndcg@{K}", lower_is_better=False),
    params=VideoParams,
    tables=TABLES,
    source=Source(simulate=lazy("pipelines.video_recommendation.source:simulate"),
                  read_files=lazy("pipelines.video_recommendation.source:read_files"),
                  file_inputs=(FileInput("interactions", "CSV/Parquet of user_id, item_id, timestamp "
                                                         "[, rating | event]"),
                               FileInput("items", "optional CSV/Parquet of item attributes", required=False))),
    features=Features(build=lazy("pipelines.video_recommendation.features:build"),
                      service="video_recommendation_v1"),
    train=lazy("pipelines.video_recommendation.pipeline:train"),
    evaluate=lazy("pipelines.video_recommendation.pipeline:evaluate"),
    score_window=lazy("pipelines.video_recommendation.pipeline:score_window"),
    smoke_test=lazy("pipelines.video_recommendation.pipeline:smoke_test"),
    step_params=StepParams(ingest=("source", "file"), features=("engagement_prior",),
                           train=("source", "split", "k", "candidates_per_generator", "generators", "ann",
                                  "ranker", "rerank"),
                           evaluate=("source", "scale", "seed", "split", "k")),
    extra_steps=(Step("index", lazy("pipelines.video_recommendation.pipeline:index"), reads=("ann", "k"),
                      outputs=("two_tower.faiss",)),),
    serving_packages=("torch", "scikit-learn", "scipy", "lightgbm", "faiss-cpu", "implicit", "threadpoolctl"),
    plots=(Plot("systems", x=f"ndcg@{K}", y="system", title=f"video_recommendation nDCG@{K} by system (test window)",
                template="bar_horizontal"),),
    schedule_minute=30,
)
