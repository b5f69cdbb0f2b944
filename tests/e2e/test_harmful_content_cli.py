"""harmful_content's CLI edges: an encoder that cannot load and a bad file of posts get one clear message."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.core.settings import PROJECT_ROOT

pytestmark = pytest.mark.e2e
runner = CliRunner()


def said(output: str) -> str:
    """The output with Rich's line wrapping undone."""
    return " ".join(output.replace("│", " ").split())


def test_a_sentence_transformers_encoder_without_the_package_is_refused_before_the_first_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    if importlib.util.find_spec("sentence_transformers") is not None:
        pytest.skip("sentence-transformers is installed here: the encoder would load from the local cache")
    doc = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    doc["harmful_content"]["text"]["encoder"] = "sentence-transformers:all-MiniLM-L6-v2"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("CASEBOOK_HOME", str(tmp_path))
    monkeypatch.setenv("CASEBOOK_PARAMS", str(tmp_path / "params.yaml"))
    result = runner.invoke(app, ["run", "harmful_content"])
    assert result.exit_code == 2
    assert "needs the optional package sentence-transformers, which is not installed" in said(result.output)
    assert "use the default encoder 'hashed'" in said(result.output)
    assert "Traceback" not in result.output and not (tmp_path / "data").exists()


def test_a_bad_file_of_posts_gets_one_message_and_no_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               prefect_server: None) -> None:
    monkeypatch.setenv("CASEBOOK_HOME", str(tmp_path))
    monkeypatch.delenv("CASEBOOK_PARAMS", raising=False)
    f = tmp_path / "posts.csv"
    pd.DataFrame({"text": ["hi", "buy now", "ok"], "language": ["en", "en", "de"], "spam": [0, 1, 0]}
                 ).to_csv(f, index=False)
    result = runner.invoke(app, ["run", "harmful_content", "--source", "file", "--posts", str(f), "--step", "ingest"])
    assert result.exit_code == 2
    assert "['language'] hold no 0/1 value, so they are no harm class" in said(result.output)
    assert "drop the column(s) that are not classes" in said(result.output)
    assert "Traceback" not in result.output
