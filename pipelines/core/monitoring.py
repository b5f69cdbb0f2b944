"""Drift monitoring every case study shares: one Evidently report per scored window.

A case hands over the reference frame (what the model was trained/validated on) and the current frame
(what it scored since), names its input, prediction and optional target columns, and gets back a small
``DriftResult`` it can log, gate a retrain on, or write to its metrics file. The full Evidently snapshot
lands in a local workspace (one project per case, so the UI shows each case's history) and a standalone
HTML report lands next to the case's other artefacts.

Evidently is imported inside the functions: it takes seconds to import, and CLI commands, unit tests and
case modules that never monitor must not pay for it.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.core.io import atomic_path
from pipelines.core.settings import ConfigError, apply_privacy_defaults

if TYPE_CHECKING:
    import pandas as pd

MAX_ROWS = 50_000
"""Frames above this are down-sampled: at this size Evidently picks distance tests (Wasserstein,
Jensen-Shannon) whose scores hardly move with more rows, while runtime keeps growing."""
SAMPLE_SEED = 0
PROJECT_PREFIX = "casebook/"
TASKS = ("binary", "regression")

# Evidently stat tests whose score is a distance (drifted when score >= threshold); every other built-in
# test reports a p-value (drifted when score < threshold). Only used when the snapshot carries no
# per-column test verdict, which our own report always asks for.
_DISTANCE_METHODS = {
    "wasserstein distance (normed)",
    "jensen-shannon distance",
    "psi",
    "kullback-leibler divergence",
    "hellinger distance",
    "energy-distance",
}

# Evidently metric type -> key in DriftResult.quality.
_QUALITY_KEYS = {
    "Accuracy": "accuracy",
    "Precision": "precision",
    "Recall": "recall",
    "F1Score": "f1",
    "RocAuc": "roc_auc",
    "LogLoss": "log_loss",
    "TPR": "tpr",
    "TNR": "tnr",
    "FPR": "fpr",
    "FNR": "fnr",
    "MeanError": "mean_error",
    "MAE": "mae",
    "MAPE": "mape",
    "RMSE": "rmse",
    "R2Score": "r2",
    "AbsMaxError": "abs_max_error",
}


@dataclass(frozen=True)
class DriftThresholds:
    """When a drift report should raise the alarm; read from each case's ``monitoring`` params."""

    drift_share: float = 0.3
    """Share of drifted input columns at or above which the alarm is raised."""
    prediction_drift: bool = True
    """Also raise the alarm when the prediction column alone drifted."""
    num_method: str | None = None
    """Evidently stat test for numerical inputs (e.g. ``wasserstein``); None: Evidently picks by size."""
    num_threshold: float | None = None
    """The ``num_method`` score that counts as drift (a distance, or a p-value for p-value tests)."""
    cat_method: str | None = None
    """Evidently stat test for categorical inputs (e.g. ``jensenshannon``); None: Evidently picks."""
    cat_threshold: float | None = None

    def __post_init__(self) -> None:
        share = self.drift_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not math.isfinite(share):
            raise ConfigError(f"drift threshold 'drift_share' must be a number in (0, 1], got {share!r}")
        if not 0 < share <= 1:
            raise ConfigError(f"drift threshold 'drift_share' must be in (0, 1], got {share!r}")
        if not isinstance(self.prediction_drift, bool):
            raise ConfigError(
                f"drift threshold 'prediction_drift' must be true or false, got {self.prediction_drift!r}"
            )
        for kind in ("num", "cat"):
            method, threshold = getattr(self, f"{kind}_method"), getattr(self, f"{kind}_threshold")
            if method is not None and (not isinstance(method, str) or not method):
                raise ConfigError(f"drift threshold '{kind}_method' must be an Evidently stat test name, got "
                                  f"{method!r}")
            if threshold is None:
                continue
            # A threshold means a distance for one test and a p-value for another: it needs its test.
            if method is None:
                raise ConfigError(f"drift threshold '{kind}_threshold' needs '{kind}_method' (the stat test it "
                                  f"is a threshold of, e.g. wasserstein or jensenshannon)")
            if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not (
                    math.isfinite(threshold) and threshold > 0):
                raise ConfigError(f"drift threshold '{kind}_threshold' must be a positive number, got {threshold!r}")

    def preset_options(self) -> dict[str, Any]:
        """The stat-test options of Evidently's ``DataDriftPreset`` that are set."""
        names = ("num_method", "num_threshold", "cat_method", "cat_threshold")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    @classmethod
    def from_params(cls, d: Mapping[str, Any] | None) -> DriftThresholds:
        """Build from a params.yaml mapping; unknown keys are errors, so a typo cannot disable a gate."""
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ConfigError(f"drift thresholds must be a mapping, got {type(d).__name__}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in d if k not in allowed)
        if unknown:
            raise ConfigError(f"unknown drift threshold key(s) {unknown}; allowed: {allowed}")
        return cls(**{str(k): v for k, v in d.items()})


@dataclass(frozen=True)
class DriftResult:
    """What a case needs from one drift report; the full detail stays in the snapshot and the HTML."""

    drift_share: float
    drifted_columns: list[str]
    prediction_drifted: bool
    prediction_drift_score: float | None
    quality: dict[str, float]
    alarm: bool
    snapshot_id: str
    html_path: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (for metrics files and Prefect artifacts)."""
        return asdict(self)


def drift_report(
    case: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: list[str],
    categorical: list[str],
    prediction: str,
    target: str | None,
    task: str = "binary",
    thresholds: DriftThresholds,
    workspace: Path,
    html_dir: Path,
    tags: list[str] | None = None,
) -> DriftResult:
    """Compare ``current`` with ``reference``, store the snapshot and HTML, and say whether to alarm.

    Input drift covers ``numerical + categorical``; the prediction (a probability for ``task="binary"``)
    is tested on its own so a model whose inputs look stable but whose outputs moved still alarms.
    When ``target`` is given the reference (the labelled baseline) must carry it; quality metrics are
    computed only when the current window has labels too (they often arrive late: a missing or all-empty
    target column just means no quality yet). For ``binary`` the target holds 0/1 labels, positive = 1.
    """
    features = [*numerical, *categorical]
    labelled = _check_inputs(reference, current, numerical, categorical, prediction, target, task)
    label = target if labelled else None
    now = datetime.now(UTC)

    ev = _import_evidently()
    cols = [*features, prediction, *([label] if label else [])]
    cur = _limit_rows(current[cols])
    ref = _limit_rows(reference[cols])
    if label and task == "binary":  # bool or 0.0/1.0 labels -> 0/1, matching Evidently's pos_label=1
        cur[label] = cur[label].astype(int)
        ref[label] = ref[label].astype(int)
    definition = _definition(ev, numerical, categorical, prediction, label, task)
    cur_ds = ev["Dataset"].from_pandas(cur, data_definition=definition)
    ref_ds = ev["Dataset"].from_pandas(ref, data_definition=definition)
    metrics: list[Any] = [
        ev["DataDriftPreset"](columns=features, drift_share=thresholds.drift_share, **thresholds.preset_options()),
        ev["ValueDrift"](column=prediction),
    ]
    if label:
        metrics.append(ev["ClassificationQuality"]() if task == "binary" else ev["RegressionQuality"]())
    # include_tests=True: the per-column drift verdicts (drifted or not, whatever stat test Evidently
    # picked) are only exposed as test results; the metric values are bare scores.
    report = ev["Report"](metrics, include_tests=True)
    try:
        snapshot = report.run(
            cur_ds,
            ref_ds,
            # Naive UTC: Evidently's own default is a naive timestamp and its UI sorts runs by it.
            timestamp=now.replace(tzinfo=None),
            metadata={
                "case": case,
                "task": task,
                "current_rows": str(len(current)),
                "reference_rows": str(len(reference)),
            },
            tags=list(tags or []),
            name=f"{case} drift {now:%Y-%m-%d %H:%M:%S}Z",
        )
    except ev["StatTestNotFoundError"] as e:  # a typo in num_method / cat_method
        raise ConfigError(f"drift thresholds of {case}: {e}") from e

    # Through JSON so numpy scalars and enums arrive as plain Python values.
    result = json.loads(snapshot.json())
    share, drifted, pred_drifted, pred_score, quality = _read_result(result, features, prediction)
    alarm = share >= thresholds.drift_share or (thresholds.prediction_drift and pred_drifted)

    ws = ev["Workspace"](str(workspace))
    project_id = _project_id(ws, ev["ProjectModel"], case, workspace)
    snapshot_ref = ws.add_run(project_id, snapshot, include_data=False)

    html_path = html_dir / f"{now:%Y%m%dT%H%M%S.%fZ}.html"
    with atomic_path(html_path) as tmp:
        # Snapshot.save_html silently writes nothing when given a Path, so render and write ourselves.
        tmp.write_text(snapshot.get_html_str(as_iframe=False), encoding="utf-8")

    return DriftResult(
        drift_share=share,
        drifted_columns=drifted,
        prediction_drifted=pred_drifted,
        prediction_drift_score=pred_score,
        quality=quality,
        alarm=bool(alarm),
        snapshot_id=str(snapshot_ref.id),
        html_path=str(html_path),
    )


def project_name(case: str) -> str:
    """The Evidently project that holds one case's snapshots."""
    return f"{PROJECT_PREFIX}{case}"


# --- internals ---------------------------------------------------------------------------------------


def _check_inputs(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    prediction: str,
    target: str | None,
    task: str,
) -> bool:
    """Fail before Evidently does (its errors name neither frame nor column); True if quality is scored."""
    if task not in TASKS:
        raise ValueError(f"unsupported task {task!r}; supported: {list(TASKS)}")
    features = [*numerical, *categorical]
    if not features:
        raise ValueError("no input columns: numerical and categorical are both empty")
    dupes = sorted({c for c in features if features.count(c) > 1})
    if dupes:
        raise ValueError(f"columns listed twice in numerical/categorical: {dupes}")
    roles = {prediction: "prediction", **({target: "target"} if target else {})}
    clash = [f"{c} ({roles[c]})" for c in features if c in roles]
    if clash:
        raise ValueError(f"prediction/target must not also be input columns: {clash}")
    if target is not None and target == prediction:
        raise ValueError(f"target and prediction are the same column {target!r}")
    for name, frame in (("reference", reference), ("current", current)):
        if len(frame) == 0:
            raise ValueError(f"{name} frame is empty (0 rows)")
        needed = [*features, prediction, *([target] if target and name == "reference" else [])]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} frame is missing column(s): {missing}")
    if target is None or target not in current.columns or current[target].isna().all():
        return False
    for name, frame in (("reference", reference), ("current", current)):
        labels = frame[target]
        unlabelled = int(labels.isna().sum())
        if unlabelled:
            # One report scores drift and quality on the same rows; silently dropping rows would skew drift.
            raise ValueError(
                f"{name} target {target!r} has {unlabelled} missing label(s) of {len(labels)}; "
                "pass only labelled rows, or target=None until the labels arrive"
            )
        if task == "binary":
            bad = sorted({repr(v) for v in labels.unique() if v not in (0, 1)})[:5]
            if bad:
                raise ValueError(f"{name} target {target!r} must hold 0/1 labels for 'binary', got {bad}")
    return True


def _import_evidently() -> dict[str, Any]:
    """Import the Evidently names we use, after the telemetry opt-outs are in the environment.

    In 0.7.23 ``Report.run`` and the local ``Workspace`` send nothing; the only senders are the UI service
    and the legacy collector (``iterative_telemetry``, disabled by ``DO_NOT_TRACK``). The opt-outs are set
    anyway so nothing this process later starts phones home.
    """
    apply_privacy_defaults()
    from evidently import BinaryClassification, DataDefinition, Dataset, Regression, Report
    from evidently.legacy.calculations.stattests.registry import StatTestNotFoundError
    from evidently.metrics import ValueDrift
    from evidently.presets import ClassificationQuality, DataDriftPreset, RegressionQuality
    from evidently.sdk.models import ProjectModel
    from evidently.ui.workspace import Workspace

    return {
        "BinaryClassification": BinaryClassification,
        "ClassificationQuality": ClassificationQuality,
        "DataDefinition": DataDefinition,
        "DataDriftPreset": DataDriftPreset,
        "Dataset": Dataset,
        "ProjectModel": ProjectModel,
        "Regression": Regression,
        "RegressionQuality": RegressionQuality,
        "Report": Report,
        "StatTestNotFoundError": StatTestNotFoundError,
        "ValueDrift": ValueDrift,
        "Workspace": Workspace,
    }


def _definition(
    ev: dict[str, Any],
    numerical: list[str],
    categorical: list[str],
    prediction: str,
    target: str | None,
    task: str,
) -> Any:
    """Declare every column's type: Evidently's inference would call a 0/1 flag or a low-cardinality id
    numerical, which changes the stat test it picks."""
    num = [*numerical, prediction]
    cat = list(categorical)
    classification = regression = None
    if target is not None and task == "binary":
        cat.append(target)
        classification = [ev["BinaryClassification"](target=target, prediction_probas=prediction)]
    elif target is not None and task == "regression":
        num.append(target)
        regression = [ev["Regression"](target=target, prediction=prediction)]
    return ev["DataDefinition"](
        numerical_columns=num,
        categorical_columns=cat,
        classification=classification,
        regression=regression,
    )


def _limit_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Down-sample big windows with a fixed seed so reruns give the same verdict."""
    if len(frame) > MAX_ROWS:
        frame = frame.sample(n=MAX_ROWS, random_state=SAMPLE_SEED)
    return frame.reset_index(drop=True)


def _type_name(config: Mapping[str, Any] | None) -> str:
    """``evidently:metric_v2:ValueDrift`` -> ``ValueDrift``."""
    raw = str((config or {}).get("type", ""))
    return raw.rsplit(":", 1)[-1]


def _as_float(value: Any) -> float | None:
    if isinstance(value, Mapping):  # mean/std metrics (MAE, MAPE, MeanError) report {"mean", "std"}
        value = value.get("mean")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _read_result(
    result: Mapping[str, Any], features: list[str], prediction: str
) -> tuple[float, list[str], bool, float | None, dict[str, float]]:
    """Pull the verdicts out of ``Snapshot.dict()``.

    Per-column verdicts come from the ValueDrift test results (status FAIL = drifted), which hold whatever
    stat test and direction Evidently chose; if they are absent, the score is compared with the metric's
    resolved threshold. The drift share is Evidently's ``DriftedColumnsCount`` share, else recomputed.
    """
    metrics = [m for m in result.get("metrics", []) if isinstance(m, Mapping)]
    tests = [t for t in result.get("tests", []) if isinstance(t, Mapping)]

    verdicts: dict[str, bool] = {}
    for test in tests:
        params = (test.get("metric_config") or {}).get("params") or {}
        if _type_name(params) == "ValueDrift" and "column" in params:
            status = test.get("status", "")
            status = getattr(status, "value", status)  # a str Enum: str() would give "TestStatus.FAIL"
            verdicts[str(params["column"])] = str(status).upper() == "FAIL"

    scores: dict[str, float | None] = {}
    share: float | None = None
    quality: dict[str, float] = {}
    for metric in metrics:
        config = metric.get("config") or {}
        kind = _type_name(config)
        value = metric.get("value")
        if kind == "ValueDrift" and "column" in config:
            column = str(config["column"])
            score = _as_float(value)
            scores[column] = score
            if column not in verdicts and score is not None and config.get("threshold") is not None:
                method = str(config.get("method", "")).lower()
                threshold = float(config["threshold"])
                verdicts[column] = score >= threshold if method in _DISTANCE_METHODS else score < threshold
        elif kind == "DriftedColumnsCount" and isinstance(value, Mapping):
            share = _as_float(value.get("share"))
        elif kind in _QUALITY_KEYS:
            number = _as_float(value)
            if number is not None:  # NaN (e.g. ROC AUC on a one-class window) is left out
                quality[_QUALITY_KEYS[kind]] = number

    drifted = [c for c in features if verdicts.get(c, False)]
    if share is None:
        share = len(drifted) / len(features)
    return float(share), drifted, bool(verdicts.get(prediction, False)), scores.get(prediction), quality


@contextlib.contextmanager
def _workspace_lock(workspace: Path) -> Iterator[None]:
    """Serialise find-or-create so two runs of one case cannot each create the case's project."""
    workspace.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, accept the tiny race
        yield
        return
    with open(workspace / ".casebook.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _project_id(ws: Any, project_model: Any, case: str, workspace: Path) -> Any:
    """Find the case's project by name, creating it on first use; oldest wins if a duplicate slipped in."""
    name = project_name(case)
    with _workspace_lock(workspace):
        # list_projects() yields None for a half-written project dir; search_project() would crash on it.
        found = [p for p in ws.list_projects() if p is not None and p.name == name]
        if found:
            return min(found, key=lambda p: str(p.id)).id  # ids are uuid7: smallest = created first
        project = ws.add_project(
            project_model(name=name, description=f"Casebook drift monitoring for the '{case}' case study")
        )
        return project.id


__all__ = ["DriftResult", "DriftThresholds", "drift_report", "project_name"]
