"""The case plug-in: every registered spec is complete, its params are checked before any work, and
the core's rules (which errors are retried, what a world is) hold for every case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines import cases
from pipelines.core.flowset import _transient, open_run
from pipelines.core.settings import PROJECT_ROOT, ConfigError
from pipelines.world.population import SCALES

CASES = list(cases.CASES)


def _params_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    doc = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    change(doc)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("CASEBOOK_HOME", str(tmp_path))
    monkeypatch.delenv("CASEBOOK_PARAMS", raising=False)


@pytest.mark.parametrize("case", CASES)
def test_the_committed_params_are_valid(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _params_file(tmp_path, monkeypatch, lambda doc: None)
    run = open_run(cases.spec(case))
    assert run.params.scale in SCALES and run.world.source == "simulator"


def _first_required(case: str, section: dict[str, Any]) -> str:
    return next(k for k, f in cases.spec(case).params.model_fields.items() if f.is_required() and k in section)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", ["wrong_type", "missing", "unknown", "out_of_range", "bad_section"])
def test_bad_params_are_one_clear_error_before_any_work(case: str, kind: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def change(doc: dict[str, Any]) -> None:
        section = doc[case]
        if kind == "wrong_type":
            section["seed"] = "seven"
        elif kind == "missing":
            del section[_first_required(case, section)]
        elif kind == "unknown":
            section["monitor"]["dayz"] = 3
        elif kind == "out_of_range":
            section["monitor"]["days"] = -3
        else:
            section["serving"] = {"workers": "two"}

    _params_file(tmp_path, monkeypatch, change)
    doc = yaml.safe_load((tmp_path / "params.yaml").read_text())[case]
    expected = {"wrong_type": f"{case}.seed = 'seven'", "missing": "missing key",
                "unknown": f"unknown key {case}.monitor.dayz", "out_of_range": f"{case}.monitor.days = -3",
                "bad_section": f"{case}.serving.workers = 'two'"}[kind]
    with pytest.raises(ConfigError, match=r"params\.yaml") as err:
        open_run(cases.spec(case))
    assert expected in str(err.value)
    if kind == "missing":
        removed = set(yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())[case]) - set(doc)
        assert f"{case}.{removed.pop()}" in str(err.value)
    assert not (tmp_path / "data").exists()  # nothing was written


@pytest.mark.parametrize("case", CASES)
def test_every_spec_declares_what_the_core_needs(case: str) -> None:
    spec = cases.spec(case)
    assert spec.name == case and spec.title and spec.metric.key
    assert spec.steps[:2] == ("ingest", "validate") and spec.steps[-3:] == ("evaluate", "deploy", "monitor")
    assert len({t.name for t in spec.tables}) == len(spec.tables)
    for keys in (spec.step_params.ingest, spec.step_params.train, spec.step_params.evaluate):
        assert set(keys) <= set(spec.params.model_fields), keys  # a step cannot be keyed on a missing param
    assert (PROJECT_ROOT / "monitoring" / f"{case}.yaml").exists()


def test_only_transient_errors_are_retried() -> None:
    class State:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def result(self, raise_on_failure: bool = True) -> BaseException:
            return self.exc

    assert _transient(None, None, State(ConnectionError("reset")))
    assert _transient(None, None, State(TimeoutError()))
    for deterministic in (ValueError("missing column"), FileNotFoundError("x"), ConfigError("bad"), KeyError("k")):
        assert not _transient(None, None, State(deterministic))


def test_a_file_world_and_a_simulated_world_live_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.core import worlds
    from pipelines.core.case import World

    monkeypatch.setenv("CASEBOOK_HOME", str(tmp_path))
    sim, other, files = World("simulator", "small", 7), World("simulator", "small", 8), World("file", "small", 7)
    root = worlds.home_of(sim)
    assert root.home == tmp_path.resolve()
    worlds.claim(root, sim)
    assert worlds.home_of(sim) == root
    assert worlds.home_of(other).home == tmp_path.resolve() / "worlds" / "simulator-small-seed8"
    assert worlds.home_of(files).home == tmp_path.resolve() / "worlds" / "file"
    with pytest.raises(RuntimeError, match="holds the world"):
        worlds.claim(root, other)
