"""The registry of case studies: name -> title and the import path of its flow (imported only on use)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    flow: str  # "module:function"
    metric: str  # the headline metric in metrics/<case>.json
    lower_is_better: bool
    file_source: bool = False  # accepts `--source file --interactions PATH [--items PATH]`

    def load_flow(self) -> Callable[..., dict[str, Any]]:
        module, func = self.flow.split(":")
        return getattr(importlib.import_module(module), func)


CASES: dict[str, Case] = {
    "ad_click": Case("ad_click", "Ad click prediction on social platforms",
                     "pipelines.ad_click.flows:ad_click_flow", "ne", lower_is_better=True),
    "video_recommendation": Case("video_recommendation", "Homepage video recommendation",
                                 "pipelines.video_recommendation.flows:video_recommendation_flow", "ndcg@10",
                                 lower_is_better=False, file_source=True),
}


def get(name: str) -> Case:
    try:
        return CASES[name]
    except KeyError:
        raise KeyError(f"unknown case study {name!r}; known: {', '.join(CASES)} (see `casebook list`)") from None
