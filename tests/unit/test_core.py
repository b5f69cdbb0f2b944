"""Settings, atomic I/O and the step manifest that lets a rerun resume."""

from pathlib import Path

import pandas as pd
import pytest

from pipelines.core.io import atomic_path, write_parquet
from pipelines.core.settings import ConfigError, load_params


def test_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert pd.read_parquet(target)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_bad_params_name_the_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEBOOK_PARAMS", str(tmp_path / "p.yaml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_params("ad_click")
    (tmp_path / "p.yaml").write_text("ad_click: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params("ad_click")
    (tmp_path / "p.yaml").write_text("other: {}\n")
    with pytest.raises(ConfigError, match="no section 'ad_click'"):
        load_params("ad_click")


def test_fingerprint_is_content_not_mtime(tmp_path: Path) -> None:
    import os

    from pipelines.core.flowset import fingerprint

    out = write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "o.parquet")
    before = fingerprint([out])
    os.utime(out, (1, 1))  # touched, same bytes: the same input
    assert fingerprint([out]) == before
    write_parquet(pd.DataFrame({"a": [1, 2]}), out)
    assert fingerprint([out]) != before


def test_every_case_can_be_scheduled() -> None:
    from typing import get_args

    from pipelines.cases import CASES
    from pipelines.deployments import CaseName

    assert set(get_args(CaseName)) == set(CASES)


def test_generated_stage_files_match_the_registry() -> None:
    from pipelines import cases
    from pipelines.core.generate import stale

    assert stale(cases.specs()) == [], "run `casebook generate` and commit dvc.yaml / prefect.yaml"


def test_the_code_a_step_runs_includes_the_shared_world_and_feast_modules() -> None:
    """An edit to pipelines/world or feature_repo must never be served from a stale cache."""
    from pipelines.core.flowset import code_roots
    from pipelines.core.settings import PROJECT_ROOT

    roots = set(code_roots("ad_click"))
    assert {PROJECT_ROOT / "pipelines" / "world", PROJECT_ROOT / "feature_repo" / "user_features.py",
            PROJECT_ROOT / "feature_repo" / "ad_click_features.py", PROJECT_ROOT / "pipelines" / "core",
            PROJECT_ROOT / "services" / "ad_click"} <= roots
    assert PROJECT_ROOT / "pipelines" / "video_recommendation" not in roots  # another case's code is not its own
