"""The casebook CLI: help, bad arguments and config get a clear error and exit code 2; report works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipelines import cases
from pipelines.cli import app

pytestmark = pytest.mark.e2e
runner = CliRunner()


def said(result: Any) -> str:
    """The output with Rich's line wrapping undone."""
    return " ".join(result.output.replace("│", " ").split())


def test_help_lists_the_commands_in_a_fresh_process() -> None:
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for command in ("list", "run", "report", "monitor", "serve"):
        assert command in out


@pytest.mark.parametrize("args, message", [
    (["run", "nope"], "unknown case study 'nope'"),
    (["report", "nope"], "unknown case study 'nope'"),
    (["run", "ad_click", "--scale", "huge"], "huge"),
    (["run", "ad_click", "--drift", "2"], "less than or equal to 1"),
    (["run", "ad_click", "--step", "bake"], "bake"),
    (["run", "ad_click", "--seed", "-1"], "greater than or equal to 0"),
    (["run", "ad_click", "--source", "file"], "ad_click has no file source"),
    (["run", "ad_click", "--interactions", "x.csv"], "takes no file input --interactions"),
    (["run", "all", "--source", "file"], "go with one case study"),
    (["run", "video_recommendation", "--source", "kafka"], "kafka"),
    (["run", "video_recommendation", "--interactions", "/nonexistent/log.csv"], "does not exist"),
    (["run", "video_recommendation", "--source", "file"], "needs an interactions file"),
    (["run", "video_recommendation", "--items", "/nonexistent/items.csv"], "--items only goes with"),
])
def test_bad_arguments_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in said(result)


def test_broken_params_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("ad_click: [unclosed\n")
    monkeypatch.setenv("CASEBOOK_PARAMS", str(bad))
    monkeypatch.setenv("CASEBOOK_HOME", str(tmp_path))
    result = runner.invoke(app, ["run", "ad_click", "--step", "ingest"])
    assert result.exit_code == 2
    assert "not valid YAML" in said(result)
    assert not (tmp_path / "data").exists()  # nothing was written


def test_report_without_a_run_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBOOK_HOME", str(tmp_path))
    result = runner.invoke(app, ["report", "ad_click"])
    assert result.exit_code == 2
    assert "casebook run ad_click" in said(result)


def test_report_prints_model_baseline_and_oracle(ad_click_run: dict[str, Any]) -> None:
    result = runner.invoke(app, ["report", "ad_click"])
    assert result.exit_code == 0, result.output
    for word in ("baseline", "model", "oracle", "ne", "roc_auc"):
        assert word in result.output


def test_report_all_and_list_show_every_case(ad_click_run: dict[str, Any], video_run: dict[str, Any]) -> None:
    result = runner.invoke(app, ["report", "all"])
    assert result.exit_code == 0, result.output
    assert "ad_click" in result.output and "video_recommendation" in result.output
    # Every case is either reported or named as not run yet (which ones ran depends on the tests before)
    for spec in cases.specs():
        assert f"model {spec.name}:" in said(result) or f"no metrics for {spec.name}" in said(result), spec.name
    assert "the simulator at scale tiny, seed 3" in said(result)
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0, listed.output
    assert "ne 0." in listed.output and "ndcg@10 0." in listed.output  # the last metrics, not a path


def test_serve_without_a_champion_exits_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBOOK_HOME", str(tmp_path))
    result = runner.invoke(app, ["serve", "ad_click"])
    assert result.exit_code == 2
    assert "has no champion model" in said(result) and "casebook run ad_click" in said(result)


@pytest.mark.parametrize("change, message", [
    ("ad_click:\n  ctr_prior: high\n", "ad_click.ctr_prior = 'high' is not allowed"),
    ("ad_click:\n  split: {valid_days: 1, test_days: two}\n", "ad_click.split.test_days = 'two'"),
])
def test_bad_params_are_refused_before_the_first_step(change: str, message: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from pipelines.core.settings import PROJECT_ROOT

    doc = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    for case, section in yaml.safe_load(change).items():
        doc[case].update(section)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("CASEBOOK_HOME", str(tmp_path))
    monkeypatch.delenv("CASEBOOK_PARAMS", raising=False)
    result = runner.invoke(app, ["run", "ad_click"])
    assert result.exit_code == 2 and message in said(result)
    assert "Traceback" not in result.output
    assert not (tmp_path / "data").exists()
