"""Project paths, parameters and the privacy defaults, resolved in one place.

Everything that writes goes under ``Paths`` so a test (or a user) can point the whole kit at another
directory with ``CASEBOOK_HOME`` and nothing else changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Every tool's documented usage-telemetry opt-out: a run makes no outbound connection.
TELEMETRY_OPT_OUT = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "FEAST_USAGE": "False",
    "BENTOML_DO_NOT_TRACK": "True",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "False",
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
}


def apply_privacy_defaults() -> None:
    """Set the telemetry opt-outs unless the user chose otherwise."""
    for key, value in TELEMETRY_OPT_OUT.items():
        os.environ.setdefault(key, value)


class ConfigError(ValueError):
    """A parameter file or option is wrong; the message says which key and what is allowed."""


@dataclass(frozen=True)
class Paths:
    """Where every artefact of a run lives; all derived from one home directory."""

    home: Path

    @classmethod
    def from_env(cls) -> Paths:
        return cls(Path(os.environ.get("CASEBOOK_HOME", PROJECT_ROOT)).resolve())

    @property
    def data(self) -> Path:
        return self.home / "data"

    def raw(self, case: str) -> Path:
        return self.data / "raw" / case

    def validated(self, case: str) -> Path:
        return self.data / "validated" / case

    def quarantine(self, case: str) -> Path:
        return self.data / "quarantine" / case

    def features(self, case: str) -> Path:
        return self.data / "features" / case

    def work(self, case: str) -> Path:
        """Intermediate artefacts (training sets, scored windows) of one case."""
        return self.data / "work" / case

    @property
    def feast(self) -> Path:
        return self.data / "feast"

    @property
    def models(self) -> Path:
        """The local BentoML home (model store and bentos)."""
        return self.home / "models" / "bentoml"

    def metrics(self, case: str) -> Path:
        return self.home / "metrics" / f"{case}.json"

    def plots(self, case: str) -> Path:
        return self.home / "plots" / case

    @property
    def evidently_workspace(self) -> Path:
        return self.home / "monitoring" / "workspace"

    def monitoring(self, case: str) -> Path:
        return self.home / "monitoring" / "reports" / case

    @property
    def params_file(self) -> Path:
        env = os.environ.get("CASEBOOK_PARAMS")
        if env:
            return Path(env)
        local = self.home / "params.yaml"
        return local if local.exists() else PROJECT_ROOT / "params.yaml"


def read_yaml(file: Path, what: str) -> Any:
    """A YAML file's content, or a ConfigError naming the file (``what`` says what it is for)."""
    try:
        return yaml.safe_load(file.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {file} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {file} is not valid YAML: {exc}") from exc


def load_params(case: str, paths: Paths | None = None) -> dict[str, Any]:
    """Read one case's section of params.yaml, failing with the file and key when it is missing."""
    paths = paths or Paths.from_env()
    file = paths.params_file
    doc = read_yaml(file, "parameter file")
    if not isinstance(doc, dict) or case not in doc:
        raise ConfigError(f"parameter file {file} has no section '{case}'")
    section = doc[case]
    if not isinstance(section, dict):
        raise ConfigError(f"section '{case}' of {file} must be a mapping, got {type(section).__name__}")
    return section
