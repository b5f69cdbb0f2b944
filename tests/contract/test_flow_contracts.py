"""Contracts every registered case keeps about its flow, parametrized over the registry.

A killed run resumes; monitoring alarms on drift only; promotion compares champion and challenger on
the same window; a failed deploy leaves the old champion serving; a killed deploy leaves no service;
each step is keyed on what it reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from pipelines import cases
from pipelines.core import registry
from pipelines.core.flowset import open_run, run_case
from pipelines.core.settings import PROJECT_ROOT, Paths

pytestmark = pytest.mark.integration
CASES = list(cases.CASES)


def _model_steps(case: str) -> list[str]:
    """ingest through evaluate: everything a killed run must not redo."""
    spec = cases.spec(case)
    return [s for s in spec.steps if s not in ("deploy", "monitor")]


def _cli(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CASEBOOK_HOME": str(home), "CASEBOOK_PARAMS": str(home / "params.yaml")}
    env.pop("PREFECT_API_URL", None)  # its own temporary server, as a user's run gets
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", *args], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def _finished_tasks(log: Path) -> int:
    return log.read_text(errors="replace").count("prefect.task_runs - Finished in state") if log.exists() else 0


def _wait_for_step_end(home: Path, manifest: Path, proc: subprocess.Popen[str], timeout_s: float = 600) -> None:
    """Until the step that writes ``manifest`` has finished as a Prefect task, its cached result stored.

    The manifest is written at the end of the step's body and Prefect stores the result just after; a kill
    between the two makes the resumed run redo the step (correctly), which is not the kill this test means.
    """
    log, deadline = home / "logs" / "casebook.log", time.monotonic() + timeout_s
    before = _finished_tasks(log)
    while not manifest.exists():  # counted while the step still runs: its own end is the next one
        before = _finished_tasks(log)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"{manifest} never appeared"
        time.sleep(0.1)
    while _finished_tasks(log) <= before:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"the step that wrote {manifest} never finished"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def fresh_homes(tmp_path_factory: pytest.TempPathFactory, casebook_home: Path) -> Callable[[str], Path]:
    """A new home per case with the session's params: nothing cached in it but Prefect's results."""
    def make(case: str) -> Path:
        home = tmp_path_factory.mktemp(f"fresh-{case}")
        (home / "params.yaml").write_text((casebook_home / "params.yaml").read_text())
        return home

    return make


@pytest.fixture(scope="module")
def trained_home(fresh_homes: Callable[[str], Path], prefect_server: None) -> Callable[[str], Path]:
    """``trained_home(case)``: a fresh home with ingest through evaluate done and no champion yet."""
    done: dict[str, Path] = {}

    def get(case: str) -> Path:
        if case not in done:
            home = fresh_homes(case)
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("CASEBOOK_HOME", str(home))
                run_case(cases.spec(case), _model_steps(case))
            done[case] = home
        return done[case]

    return get


@pytest.mark.parametrize("case", CASES)
def test_a_run_killed_mid_step_resumes_and_gives_the_same_metrics(
        case: str, case_run: Callable[[str], dict[str, Any]], fresh_homes: Callable[[str], Path]) -> None:
    case_run(case)  # the uninterrupted run of the same world, in the session's home
    home = fresh_homes(case)
    steps = [a for s in _model_steps(case) for a in ("-s", s)]
    proc = _cli(home, case, *steps)
    # Killed while it trains: the steps before have finished (results stored), train has not.
    _wait_for_step_end(home, home / "data" / "work" / case / "manifests" / "features.json", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (home / "data" / "work" / case / "manifests" / "evaluate.json").exists()
    done = {p: p.stat().st_mtime_ns for layer in ("raw", "validated", "features")
            for p in (home / "data" / layer).rglob("*.parquet")}
    again = _cli(home, case, *steps)
    out, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out[-3000:]
    for step in ("ingest", "validate", "features"):
        assert f"{case} {step}" in out and "from cache" in out.split(f"{case} {step}")[1].splitlines()[0], out
    assert {p: p.stat().st_mtime_ns for p in done} == done  # not redone
    key = cases.spec(case).metric.key
    resumed = json.loads((home / "metrics" / f"{case}.json").read_text())
    uninterrupted = json.loads(Paths.from_env().metrics(case).read_text())
    assert resumed["model"][key] == pytest.approx(uninterrupted["model"][key], abs=1e-9)
    assert resumed["baseline"] == uninterrupted["baseline"]


@pytest.mark.parametrize("case", CASES)
def test_monitoring_alarms_on_drift_only(case: str, case_run: Callable[[str], dict[str, Any]]) -> None:
    case_run(case)
    calm = run_case(cases.spec(case), ["monitor"], drift=0.0)["monitor"]
    moved = run_case(cases.spec(case), ["monitor"], drift=1.0)["monitor"]
    assert moved["drift_share"] > calm["drift_share"]
    assert moved["alarm"] and not calm["alarm"]
    assert Path(moved["html_path"]).exists()


def _forget(run: Any, step: str) -> None:
    """Make a step run again (as if its outputs had been lost)."""
    (run.work("manifests") / f"{step}.json").unlink(missing_ok=True)


@pytest.mark.parametrize("case", CASES)
def test_a_challenger_no_better_on_the_same_window_is_not_promoted(
        case: str, case_run: Callable[[str], dict[str, Any]]) -> None:
    session = case_run(case)
    spec, run = cases.spec(case), open_run(cases.spec(case))
    champion = registry.champion(case)
    assert champion == session["deploy"]["champion"]
    _forget(run, "evaluate")  # the same model again: registered as a new version, scored on the same window
    out = run_case(spec, ["evaluate", "deploy"])
    verdict = json.loads(run.work("challenger.json").read_text())
    assert verdict["challenger"] != champion and verdict["champion"]["tag"] == champion
    assert verdict["challenger_value"] == verdict["champion"]["value"]  # same model, same window
    assert out["deploy"]["promoted"] is False and "does not beat" in out["deploy"]["reason"]
    assert registry.champion(case) == champion
    metrics = json.loads(run.paths.metrics(case).read_text())
    assert metrics["promotion"]["beats_champion"] is False


@pytest.mark.parametrize("case", CASES)
def test_a_killed_deploy_leaves_no_service_behind(case: str, trained_home: Callable[[str], Path]) -> None:
    home = trained_home(case)
    proc = _cli(home, case, "-s", "deploy")
    pidfile = home / "run" / f"{case}-service.pid"
    _wait_for(pidfile, proc)
    group = int(pidfile.read_text().split()[0])
    os.killpg(proc.pid, signal.SIGKILL)  # the run dies; the service it started must not outlive it
    proc.wait()
    deadline = time.monotonic() + 30
    while _alive(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(group), f"service group {group} outlived its run"


@pytest.mark.parametrize("case", CASES)
def test_a_failed_smoke_test_keeps_the_old_champion(case: str, trained_home: Callable[[str], Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBOOK_HOME", str(trained_home(case)))
    spec = cases.spec(case)
    before = registry.champion(case)  # none, or the killed deploy's if it got that far

    def refuses(run: Any, url: str) -> dict[str, Any]:
        raise RuntimeError(f"the {case} service gave a wrong answer at {url}")

    if before is None:
        with pytest.raises(RuntimeError, match="wrong answer"):
            run_case(dataclasses.replace(spec, smoke_test=refuses), ["deploy"])
        assert registry.champion(case) is None  # never promoted before a real request succeeded
        out = run_case(spec, ["deploy"])["deploy"]
        assert out["promoted"] and out["smoke_test"]["known"] and out["smoke_test"]["cold_start"]
    assert registry.champion(case) == json.loads(open_run(spec).work("challenger.json").read_text())["challenger"]


@pytest.mark.parametrize("case", CASES)
def test_continual_learning_compares_champion_and_challenger_on_the_newest_window(
        case: str, trained_home: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """On a drift alarm the retrained challenger and the champion are scored on the same new window."""
    monkeypatch.setenv("CASEBOOK_HOME", str(trained_home(case)))
    spec = cases.spec(case)
    before = registry.champion(case)
    params = yaml.safe_load(Paths.from_env().params_file.read_text())
    params[case]["monitor"]["retrain_on_alarm"] = True
    file = Paths.from_env().home / "retrain-params.yaml"
    file.write_text(yaml.safe_dump(params))
    monkeypatch.setenv("CASEBOOK_PARAMS", str(file))
    out = run_case(spec, ["monitor"], drift=1.0)
    assert out["monitor"]["alarm"] and "retrain" in out
    verdict = json.loads(open_run(spec).work("challenger.json").read_text())
    lineage = json.loads((open_run(spec).work("artifacts") / "lineage.json").read_text())
    assert verdict["champion"]["tag"] == before and verdict["window"] == lineage["test_window"]
    better = spec.metric.better(verdict["challenger_value"], verdict["champion"]["value"])
    assert out["retrain"]["deploy"]["promoted"] is better
    assert registry.champion(case) == (verdict["challenger"] if better else before)



def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("case", CASES)
def test_each_step_is_keyed_on_what_it_reads(case: str, case_run: Callable[[str], dict[str, Any]],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A param no step reads, the other case's user file, or a batch restored byte for byte: nothing reruns."""
    case_run(case)
    spec = cases.spec(case)
    run = open_run(spec)
    others = {f: f.read_bytes() for f in (run.paths.features("shared") / "user_profile").glob("*.parquet")
              if f.stem != case}
    for f in others:  # another case's file of the shared profile changes
        pd.read_parquet(f).iloc[1:].to_parquet(f, index=False)
    raw = next(run.paths.raw(case).rglob("*.parquet"))
    raw.write_bytes(raw.read_bytes())  # restored byte for byte: a new mtime, the same content
    params = yaml.safe_load(Paths.from_env().params_file.read_text())
    params[case]["monitor"]["days"] += 1  # read by monitor only
    file = Paths.from_env().home / "keyed-params.yaml"
    file.write_text(yaml.safe_dump(params))
    monkeypatch.setenv("CASEBOOK_PARAMS", str(file))
    states: dict[str, str] = {}
    try:
        run_case(spec, _model_steps(case), progress=lambda step, state, _s: states.__setitem__(step, state))
    finally:
        for f, blob in others.items():
            f.write_bytes(blob)
    assert states == {s: "cached" for s in _model_steps(case)}


@pytest.mark.parametrize("case", CASES)
def test_each_service_answered_a_known_and_a_cold_start_entity(case: str,
                                                               case_run: Callable[[str], dict[str, Any]]) -> None:
    smoke = case_run(case)["deploy"]["smoke_test"]  # a real BentoML server, started on the challenger
    assert smoke["known"] and smoke["cold_start"]
