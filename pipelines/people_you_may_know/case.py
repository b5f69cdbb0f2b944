"""People you may know (the book's chapter 10), declared for the core.

Link prediction on the shared social graph: a GraphSAGE-style GNN whose pair scorer also reads the
heuristics (mutual friends, Adamic-Adar), trained on one graph snapshot and tested on the next; a batch
step precomputes every active user's list into the table the service reads, and the service falls back
to friends of friends ranked by Adamic-Adar for a user without one. Baselines: mutual friends and
Adamic-Adar. On the simulator, or on your own file of timestamped edges (``--source file --edges PATH``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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
from pipelines.people_you_may_know.schema import TABLES

K = 10
"""The list length the headline metric is taken at (``k`` in params.yaml must match it)."""


class FileSource(Params):
    edges: str | None = Field(None, description="CSV or Parquet of src, dst, timestamp")
    nodes: str | None = Field(None, description="optional CSV or Parquet: user_id [, age, gender, country, city, "
                                                "school_id, workplace_id]")


class Split(Params):
    label_days: float = Field(gt=0, le=3650, description="Δ: labels are the friendships of the Δ days after a "
                                                         "snapshot (train at end - 2Δ, test at end - Δ)")
    train_snapshots: int = Field(1, ge=1, le=52, description="train snapshots at end - 2Δ, end - 3Δ, ...: more "
                                                            "label windows to learn from")


class Candidates(Params):
    cap: int = Field(ge=1, le=2000, description="candidates per user (most mutual friends first)")


class Gnn(Params):
    hidden: int = Field(ge=4, le=512)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    steps: int = Field(ge=1, description="optimizer steps (pair mini-batches, full-graph message passing)")
    batch_size: int = Field(ge=16)
    eval_every: int = Field(ge=1, description="steps between validation checks")
    patience: int = Field(ge=1, description="checks without a better validation ROC-AUC before stopping")
    valid_share: float = Field(gt=0, lt=0.5, description="share of training pairs held out for early stopping")
    negatives_per_user: int = Field(ge=1, description="candidates without a friendship kept per training user "
                                                      "(all with one are kept)")


class Precompute(Params):
    k: int = Field(ge=1, le=500, description="people stored per active user")
    active_days: float = Field(gt=0, description="active = made a friend or sent/got a request in these days")
    keep_lists: int = Field(3, ge=1, le=50, description="newest lists kept in the serving table")


class Serving(ServingParams):
    max_k: int = Field(50, ge=1, le=500)
    max_request_friends: int = Field(5_000, ge=0, le=100_000, description="friends a request may name")


class PeopleParams(CaseParams):
    source: Literal["simulator", "file"] = "simulator"
    file: FileSource = FileSource()
    split: Split
    candidates: Candidates
    gnn: Gnn
    precompute: Precompute
    k: Literal[10] = K
    serving: Serving = Serving()


CASE = CaseSpec(
    name="people_you_may_know",
    title="People you may know",
    metric=Metric(f"map@{K}", lower_is_better=False),
    params=PeopleParams,
    tables=TABLES,
    source=Source(simulate=lazy("pipelines.people_you_may_know.source:simulate"),
                  read_files=lazy("pipelines.people_you_may_know.source:read_files"),
                  file_inputs=(FileInput("edges", "CSV/Parquet of timestamped edges: src, dst, timestamp"),
                               FileInput("nodes", "optional CSV/Parquet of user_id and attributes", required=False))),
    features=Features(build=lazy("pipelines.people_you_may_know.features:build"), service="people_you_may_know_v1"),
    train=lazy("pipelines.people_you_may_know.pipeline:train"),
    evaluate=lazy("pipelines.people_you_may_know.pipeline:evaluate"),
    score_window=lazy("pipelines.people_you_may_know.pipeline:score_window"),
    smoke_test=lazy("pipelines.people_you_may_know.pipeline:smoke_test"),
    step_params=StepParams(ingest=("source", "file"), train=("source", "split", "candidates", "gnn"),
                           evaluate=("k",)),
    extra_steps=(Step("precompute", lazy("pipelines.people_you_may_know.pipeline:precompute"),
                      reads=("precompute", "candidates", "split"), outputs=("serving.sqlite",)),),
    serving_packages=("networkx", "torch", "scikit-learn", "scipy"),
    plots=(Plot("systems", x=f"map@{K}", y="system", title=f"people_you_may_know mAP@{K} by system (test window)",
                template="bar_horizontal"),),
    schedule_minute=50,
)
