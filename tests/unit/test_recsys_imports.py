"""The shared recommender parts stay light: importing one loads no model library and no case.

A service that only re-ranks, or a case without a neural generator, should not pay torch's start-up
(seconds, hundreds of MB); and core must never depend on a case or on the simulated world.
"""

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import pipelines.core.recsys

HEAVY = ("torch", "lightgbm", "faiss", "implicit")
UPWARD = ("pipelines.video_recommendation", "pipelines.world")
MODULES = ["pipelines.core.recsys"] + [
    f"pipelines.core.recsys.{m.name}" for m in pkgutil.iter_modules(pipelines.core.recsys.__path__)]


@pytest.mark.parametrize("module", MODULES)
def test_importing_a_recsys_module_loads_no_model_library_and_no_case(module: str) -> None:
    code = (f"import sys, {module}\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m.startswith({UPWARD!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "[]", f"{module} imports {out.stdout.strip()}"


def test_the_recsys_modules_are_all_checked() -> None:
    assert {"pipelines.core.recsys.rerank", "pipelines.core.recsys.ranker"} <= set(MODULES)
