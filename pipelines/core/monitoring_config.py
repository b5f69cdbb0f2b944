"""Each case's monitoring definition, tracked in ``monitoring/<case>.yaml``: what is compared, how, when to alarm.

Kept beside, not inside, params.yaml: these are operating rules an on-call person tunes (stat tests,
thresholds, monitored columns), and a change to them must not retrain a model. A home may carry its own
``monitoring/<case>.yaml`` (tests do); otherwise the repository's is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.core.monitoring import DriftThresholds
from pipelines.core.settings import PROJECT_ROOT, ConfigError, Paths, read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Columns(_Strict):
    numerical: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    prediction: str = "prediction"
    target: str | None = Field(None, description="the label column; quality is reported once labels arrive")


class Tests(_Strict):
    """Evidently stat tests per column kind; unset: Evidently picks one by column size and type."""

    num_method: str | None = None
    num_threshold: float | None = Field(None, gt=0)
    cat_method: str | None = None
    cat_threshold: float | None = Field(None, gt=0)


class Alarm(_Strict):
    drift_share: float = Field(0.3, gt=0, le=1, description="share of drifted inputs that raises the alarm")
    prediction_drift: bool = Field(True, description="a drifted prediction alone raises it too")


class Monitoring(_Strict):
    task: Literal["binary", "regression"] = "binary"
    columns: Columns
    tests: Tests = Tests()
    alarm: Alarm = Alarm()

    def thresholds(self) -> DriftThresholds:
        return DriftThresholds(drift_share=self.alarm.drift_share, prediction_drift=self.alarm.prediction_drift,
                               **self.tests.model_dump())


def monitoring_file(case: str, paths: Paths) -> Path:
    local = paths.home / "monitoring" / f"{case}.yaml"
    return local if local.exists() else PROJECT_ROOT / "monitoring" / f"{case}.yaml"


def load_monitoring(case: str, paths: Paths | None = None) -> Monitoring:
    """The case's monitoring definition, checked: a typo or a bad threshold is a ConfigError naming the key."""
    file = monitoring_file(case, paths or Paths.from_env())
    doc = read_yaml(file, f"the monitoring definition of {case}")
    try:
        return Monitoring.model_validate(doc)
    except ValidationError as exc:
        from pipelines.core.params import explain

        raise ConfigError(explain(exc, str(file))) from None
