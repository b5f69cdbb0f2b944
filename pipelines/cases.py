"""The registry of case studies: the CLI, deployments, stage generation, tests and benchmarks read it.

Adding a case study is one line here (its ``pipelines/<case>/case.py`` declares the rest). Only names are
listed, so ``casebook --help`` imports no case; a spec is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.core.case import CaseSpec

CASES: dict[str, str] = {
    "ad_click": "pipelines.ad_click.case",
    "video_recommendation": "pipelines.video_recommendation.case",
    "event_recommendation": "pipelines.event_recommendation.case",
    "visual_search": "pipelines.visual_search.case",
    "harmful_content": "pipelines.harmful_content.case",
    "people_you_may_know": "pipelines.people_you_may_know.case",
}


def spec(name: str) -> CaseSpec:
    """The declared case; an unknown name is a LookupError that lists the known ones."""
    if name not in CASES:
        raise LookupError(f"unknown case study {name!r}; known: {', '.join(CASES)} (see `casebook list`)")
    return importlib.import_module(CASES[name]).CASE  # type: ignore[no-any-return]


def specs() -> list[CaseSpec]:
    return [spec(name) for name in CASES]
