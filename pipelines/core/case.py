"""The case plug-in: what a case study declares, and the typed values its steps hand on.

A case study is one ``CaseSpec`` (``pipelines/<case>/case.py``). It declares what is specific to it:
its tables, where data comes from, its feature tables, its train/evaluate bodies, how to score a window
for monitoring and how to smoke-test its service. ``pipelines.core.flowset`` turns a spec into the
Prefect flow and owns every mechanic that has the same shape in every case (batch names, landing, the
validation gate, manifests and resume, atomic writes, metrics and plot files, promotion, monitoring
and retraining). Nothing here imports a heavy library: the registry and the CLI read specs cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.core.settings import Paths
from pipelines.core.validation import TableSchema

if TYPE_CHECKING:
    import pandas as pd

Tables = dict[str, "pd.DataFrame"]
ScaleName = Literal["tiny", "small", "large"]
"""Mirrors ``pipelines.world.population.SCALES`` (a unit test keeps the two equal)."""


def lazy(target: str) -> Callable[..., Any]:
    """``"module:function"`` as a callable that imports on first call: specs stay cheap to import."""
    module, name = target.split(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__qualname__ = call.__name__ = name
    call.__module__ = module
    return call


# -- parameters -----------------------------------------------------------------------------------------
class Params(BaseModel):
    """Base of every params model: an unknown key is a typo, so it is an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DeployParams(Params):
    build: bool = Field(True, description="build the Bento before promotion")
    smoke_test: bool = Field(True, description="start the service on the challenger, send a real request")


class MonitorParams(Params):
    days: int = Field(ge=1, le=60, description="the next window of traffic to score")
    drift: float = Field(0.0, ge=0.0, le=1.0, description="0 = same world; up to 1 = shifted")
    retrain_on_alarm: bool = True


class ServingParams(Params):
    """What every service reads from ``<case>.serving``; a case adds its request limits.

    ``K_LIMIT`` names the case's key that caps a response's length; ``default_k`` may not exceed it.
    """

    K_LIMIT: ClassVar[str] = "max_k"
    workers: int = Field(1, ge=1, le=32, description="BentoML worker processes (~500 MB each)")
    timeout_s: int = Field(30, ge=1, le=600, description="seconds a request may take")
    item_cache_ttl_s: int = Field(3600, ge=1, description="per-worker cache of item views (materialized daily)")
    default_k: int = Field(10, ge=1, description="items returned when a request does not say")

    @model_validator(mode="after")
    def _k_fits(self) -> Self:
        limit = getattr(self, self.K_LIMIT)
        if self.default_k > limit:
            raise ValueError(f"default_k ({self.default_k}) must not exceed {self.K_LIMIT} ({limit})")
        return self


class CaseParams(Params):
    """What every case's section of params.yaml has; a case subclasses it with its own keys."""

    scale: ScaleName = "small"
    seed: int = Field(7, ge=0)
    deploy: DeployParams = DeployParams()
    monitor: MonitorParams


# -- what a case declares -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """The headline metric: ``metrics["model"][key]``; promotion, reports and DVC read it."""

    key: str
    lower_is_better: bool

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` strictly beats ``b``."""
        return a < b if self.lower_is_better else a > b


@dataclass(frozen=True)
class FileInput:
    """One file a ``--source file`` run reads, given as ``--<name> PATH`` or ``<case>.file.<name>``.

    ``kind="dir"``: the input is a folder (e.g. images in class subfolders), read as a whole.
    """

    name: str
    help: str
    required: bool = True
    kind: Literal["file", "dir"] = "file"


@dataclass(frozen=True)
class Source:
    """Where a case's batches come from: the simulator, and optionally the user's own files.

    ``simulate(run, start_day, n_days, drift)`` returns one window's tables; ``read_files(run, files)``
    the tables of the given files (``files``: input name -> path).
    """

    simulate: Callable[[Run, int, int, float], Tables]
    read_files: Callable[[Run, Mapping[str, Path]], Tables] | None = None
    file_inputs: tuple[FileInput, ...] = ()


@dataclass(frozen=True)
class Features:
    """Feature tables for Feast: ``build(run)`` -> table name -> frame (each with ``event_timestamp``).

    ``service`` is the FeatureService training reads (the views it lists are the ones materialized);
    ``users`` names the table whose rows become this case's file of the shared user profile.
    """

    build: Callable[[Run], Tables]
    service: str
    users: str | None = "users"


@dataclass(frozen=True)
class Trained:
    """What ``train`` hands on: the model to register, its lineage and files evaluate reads back."""

    model: Any
    lineage: dict[str, Any]
    artifacts: Tables = field(default_factory=dict)
    """Written to ``data/work/<case>/<name>.parquet`` (e.g. the scored test set)."""


@dataclass(frozen=True)
class Report:
    """What ``evaluate`` hands on: the metrics JSON (``metrics["model"]`` holds the headline), plots.

    ``evaluate`` scores *any* model on the run's test window: the core calls it for the challenger and
    again for the serving champion, so promotion compares the two on the same, newest window.
    """

    metrics: dict[str, Any]
    plots: dict[str, Any] = field(default_factory=dict)
    """Name -> matplotlib figure, saved as ``plots/<case>/<name>.png``."""
    plot_data: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Name -> rows, saved as ``plots/<case>/<name>.json`` for ``dvc plots``."""
    reference: pd.DataFrame | None = None
    """The scored test window: what monitoring compares the next window with."""


@dataclass(frozen=True)
class Step:
    """An extra named step of the book (e.g. ``index``), run after ``after`` on the challenger model.

    ``body(run, model)`` may change the model (e.g. attach the index it built) and returns a JSON-able
    summary; ``outputs`` are files it writes under ``data/work/<case>/``.
    """

    name: str
    body: Callable[[Run, Any], dict[str, Any]]
    after: Literal["train"] = "train"
    reads: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plot:
    """A plot ``evaluate`` writes (``Report.plot_data[name]``) and how ``dvc plots show`` draws it."""

    name: str
    x: str
    y: str
    title: str
    template: str = "linear"


@dataclass(frozen=True)
class StepParams:
    """Which top-level params each step reads: its cache key and its DVC stage's ``params``."""

    ingest: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    train: tuple[str, ...] = ()
    evaluate: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaseSpec:
    """One case study, declared. See the module docstring for who builds what from it."""

    name: str
    title: str
    metric: Metric
    params: type[CaseParams]
    tables: tuple[TableSchema, ...]
    source: Source
    features: Features | None
    train: Callable[[Run], Trained]
    evaluate: Callable[[Run, Any], Report]
    score_window: Callable[[Run, Any, Tables], pd.DataFrame]
    """Score one monitored window with a model: the frame Evidently compares with the reference."""
    smoke_test: Callable[[Run, str], dict[str, Any]]
    """Given the base URL of the service started on the challenger, send real requests (a known and a
    cold-start entity) within the serving limits; raise if an answer is wrong."""
    step_params: StepParams = StepParams()
    extra_steps: tuple[Step, ...] = ()
    serving_packages: tuple[str, ...] = ()
    """Distributions the service imports beyond the core set; their versions come from the lock."""
    plots: tuple[Plot, ...] = ()
    schedule_minute: int = 0
    """Minute past the hour of its scheduled monitor (06:mm) and retrain (Mondays 03:mm) runs."""
    review_queue: bool = False
    """The case keeps a human review queue (``pipelines.core.review``): ``casebook review <case>`` lists,
    labels and exports it, and its labels file is one of the train step's inputs (its cache key)."""
    add_to_index: Callable[[Run, Path], dict[str, Any]] | None = None
    """``casebook index <case> --add DIR``: put the items in DIR into the served index without a rebuild."""

    @property
    def steps(self) -> tuple[str, ...]:
        """Every step in the order the flow runs them."""
        extra = tuple(s.name for s in self.extra_steps)
        head = ("ingest", "validate", *(("features",) if self.features else ()), "train")
        return (*head, *extra, "evaluate", "deploy", "monitor")

    def table(self, name: str) -> TableSchema:
        return next(t for t in self.tables if t.name == name)

    def extra(self, name: str) -> Step:
        return next(s for s in self.extra_steps if s.name == name)


# -- what a step gets -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class World:
    """Which world a run's data belong to: never mixed with another's (seed, scale, source)."""

    source: str
    scale: str
    seed: int

    @property
    def id(self) -> str:
        return "file" if self.source == "file" else f"{self.source}-{self.scale}-seed{self.seed}"

    def describe(self) -> str:
        return "your files (--source file)" if self.source == "file" else \
            f"the simulator at scale {self.scale}, seed {self.seed}"


@dataclass(frozen=True)
class Run:
    """The context every step body gets: the case, its checked params, its world and where files live."""

    spec: CaseSpec
    params: Any  # the case's CaseParams subclass
    paths: Paths
    world: World
    files: Mapping[str, Path] = field(default_factory=dict)

    @property
    def case(self) -> str:
        return self.spec.name

    def work(self, name: str) -> Path:
        return self.paths.work(self.case) / name

    def validated(self, table: str) -> pd.DataFrame:
        """Every validated batch of a table, later batches winning on the table's key."""
        import pandas as pd

        schema = self.spec.table(table)
        files = sorted((self.paths.validated(self.case) / table).glob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"no validated '{table}' data under {self.paths.validated(self.case)}: "
                                    f"run `casebook run {self.case} --step ingest --step validate` first")
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        return frame.drop_duplicates(list(schema.key), keep="last").reset_index(drop=True)

    def batches(self, table: str) -> list[str]:
        """The validated batch names of a table (lineage)."""
        return sorted(p.stem for p in (self.paths.validated(self.case) / table).glob("*.parquet"))

    @cached_property
    def store(self) -> Any:
        """The shared Feast store of this world."""
        from pipelines.core import feast

        return feast.store(self.paths)
