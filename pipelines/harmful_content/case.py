"""Harmful content detection (the book's chapter 5), declared for the core.

An early-fusion multi-task network (text, image embedding, author history, engagement and reports; one
head per harm class) beside a per-class text-only logistic baseline; per-class removal and review
thresholds set on the validation window; a service that removes, queues for human review or allows;
a review queue whose labels flow into the next training run. On the simulator, or on your own file of
labeled posts (``--source file --posts PATH``).
"""

from __future__ import annotations

from typing import Literal

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
    StepParams,
    lazy,
)
from pipelines.harmful_content.schema import TABLES


class FileSource(Params):
    posts: str | None = Field(None, description="CSV or Parquet: text [, post_id, author_id, created_at, img_NN], "
                                                "one 0/1 column per class")


class Split(Params):
    """By creation time: the oldest posts train, the next validate (thresholds), the newest test."""

    valid_share: float = Field(gt=0, lt=0.5)
    test_share: float = Field(gt=0, lt=0.5)


class Text(Params):
    encoder: str = Field("hashed", description="hashed | sentence-transformers:<model name or local path>")
    n_features: int = Field(2**14, ge=2**8, le=2**20, description="hash buckets per n-gram kind (hashed)")

    @model_validator(mode="after")
    def _available(self) -> Text:
        """Refuse a sentence-transformers encoder without the package before any step runs, not at train."""
        import importlib.util

        from pipelines.core.text import SENTENCE_TRANSFORMERS, encoder

        encoder(self.encoder, self.n_features)  # an unknown name: its message
        if self.encoder.startswith(SENTENCE_TRANSFORMERS) and importlib.util.find_spec("sentence_transformers") is None:
            raise ValueError(f"text encoder {self.encoder!r} needs the optional package sentence-transformers, "
                             "which is not installed (and nothing is downloaded at run time): install it and put "
                             "the model in its local cache or a folder, or use the default encoder 'hashed'")
        return self


class Logistic(Params):
    c: float = Field(gt=0, description="inverse L2 strength of each class's text-only logistic regression")


class Fusion(Params):
    hidden: tuple[int, ...] = Field(min_length=1)
    dropout: float = Field(ge=0, lt=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    epochs: int = Field(ge=1)
    patience: int = Field(ge=1)
    batch_size: int = Field(ge=1)


class Thresholds(Params):
    remove_precision: float = Field(gt=0, le=1, description="removal precision each class must reach on validation, "
                                                            "as a confidence lower bound")
    review_precision: float = Field(gt=0, le=1, description="the lower precision that opens the review band")
    confidence: float = Field(0.95, ge=0.5, lt=1, description="one-sided confidence of the Clopper-Pearson bound; "
                                                              "no threshold reaching it makes a class review-only")

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.review_precision > self.remove_precision:
            raise ValueError("review_precision must not exceed remove_precision")
        return self


class Serving(ServingParams):
    K_LIMIT = "max_k"
    max_k: int = Field(1, ge=1, le=1, description="one decision per post")
    default_k: int = 1
    max_text_chars: int = Field(5000, ge=1, le=100_000, description="longer posts are refused (413-like 400)")


class HarmfulContentParams(CaseParams):
    source: Literal["simulator", "file"] = "simulator"
    file: FileSource = FileSource()
    violation_prior: float = Field(gt=0, lt=1, description="prior share of an author's posts found harmful")
    split: Split
    text: Text = Text()
    logistic: Logistic
    fusion: Fusion
    thresholds: Thresholds
    serving: Serving = Serving()


CASE = CaseSpec(
    name="harmful_content",
    title="Harmful content detection",
    metric=Metric("macro_pr_auc", lower_is_better=False),
    params=HarmfulContentParams,
    tables=TABLES,
    source=Source(simulate=lazy("pipelines.harmful_content.source:simulate"),
                  read_files=lazy("pipelines.harmful_content.source:read_files"),
                  file_inputs=(FileInput("posts", "CSV/Parquet of text [, post_id, author_id, created_at], one 0/1 "
                                                  "column per harm class"),)),
    features=Features(build=lazy("pipelines.harmful_content.features:build"), service="harmful_content_v1"),
    train=lazy("pipelines.harmful_content.pipeline:train"),
    evaluate=lazy("pipelines.harmful_content.pipeline:evaluate"),
    score_window=lazy("pipelines.harmful_content.pipeline:score_window"),
    smoke_test=lazy("pipelines.harmful_content.pipeline:smoke_test"),
    step_params=StepParams(ingest=("source", "file"), features=("violation_prior",),
                           train=("source", "violation_prior", "split", "text", "logistic", "fusion", "thresholds")),
    serving_packages=("torch", "scikit-learn", "scipy"),
    plots=(Plot("pr_curves", x="recall", y="precision", title="harmful_content PR curves (test window)"),),
    review_queue=True,
    schedule_minute=45,
)
