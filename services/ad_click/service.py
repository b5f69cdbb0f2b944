"""Ad click ranking service: Feast online features + the registry's champion model, over HTTP.

``POST /rank`` scores a user's candidate ads as if each were shown in the top slot and returns the top
k by calibrated click probability, after dropping ads whose targeting excludes the user. ``GET /readyz``
answers 200 with the model tag once the model and feature store are loaded; BentoML adds ``/metrics``,
``/livez``, the Swagger UI at ``/`` and the OpenAPI spec at ``/docs.json``.

Run by hand from the repository root::

    BENTOML_HOME=$CASEBOOK_HOME/models/bentoml \\
        bentoml serve services.ad_click.service:AdClick --host 127.0.0.1 --port 3000
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import bentoml
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.core import feast as core_feast
from pipelines.core import registry
from pipelines.core.settings import ConfigError, Paths, apply_privacy_defaults, load_params

CASE = "ad_click"
FEATURE_SERVICE = "ad_click_v1"
SERVING_DEFAULTS = {"max_candidates": 100, "default_k": 10, "workers": 1}
SCORING_POSITION = 1
"""Every candidate is scored as if shown in the top slot, so position bias does not pick the winner."""


def serving_params(paths: Paths | None = None) -> dict[str, int]:
    """``ad_click.serving`` from params.yaml over the defaults; no params file means the defaults."""
    paths = paths or Paths.from_env()
    section = load_params(CASE, paths).get("serving") if paths.params_file.exists() else None
    out = dict(SERVING_DEFAULTS)
    for key, value in (section or {}).items():
        if key not in out:
            raise ConfigError(f"unknown key ad_click.serving.{key} in {paths.params_file}; "
                              f"allowed: {sorted(out)}")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"ad_click.serving.{key} must be a positive integer, got {value!r}")
        out[key] = value
    if out["default_k"] > out["max_candidates"]:
        raise ConfigError("ad_click.serving.default_k must not exceed max_candidates")
    return out


SERVING = serving_params()
MAX_CANDIDATES = SERVING["max_candidates"]
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
"""Feast entity keys are int64: a larger id would fail inside the store, so it is a 400 here."""


class RankRequest(BaseModel):
    """One ranking request; strict JSON types, so ``"5"`` is not a user id and typos are errors."""

    model_config = ConfigDict(strict=True, extra="forbid")

    user_id: Id = Field(description="The user to rank for; an unknown id is a cold-start user.")
    candidate_ad_ids: list[Id] = Field(
        min_length=1, max_length=MAX_CANDIDATES, description="Distinct ad ids to rank."
    )
    device: Literal["mobile", "desktop", "tablet"] = "mobile"
    hour: int | None = Field(default=None, ge=0, le=23, description="UTC hour of the request; default now.")
    k: int = Field(default=SERVING["default_k"], ge=1, le=MAX_CANDIDATES, description="Ads to return.")

    @field_validator("candidate_ad_ids")
    @classmethod
    def _distinct(cls, ids: list[int]) -> list[int]:
        seen: set[int] = set()
        dups = sorted({a for a in ids if a in seen or seen.add(a)})  # type: ignore[func-returns-value]
        if dups:
            raise ValueError(f"duplicate ad ids: {dups[:10]}")
        return ids


class ScoredAd(BaseModel):
    ad_id: int
    p_click: float = Field(description="Calibrated probability of a click if shown in position 1.")
    cold_start: bool = Field(description="No click history for this ad (unknown or new): prior-based score.")


class RankResponse(BaseModel):
    model_tag: str
    user_known: bool = Field(description="False: no profile for this user, so no targeting filter applied.")
    ads: list[ScoredAd] = Field(description="Top k by p_click, highest first.")
    filtered_out: list[int] = Field(description="Candidates whose targeting (country, age) excludes the user")


@dataclass
class Ranker:
    """The request path without HTTP: one Feast read, targeting filter, one model call."""

    tag: str
    model: Any
    fs: Any

    def __post_init__(self) -> None:
        # Resolved once: looking the feature service up costs a registry read per call.
        from feast.types import Int32, Int64

        self.features = self.fs.get_feature_service(FEATURE_SERVICE)
        fields = [f for p in self.features.feature_view_projections for f in p.features]
        # Online reads return floats (7.0) for int columns with a missing row; training saw ints (7).
        self.int_columns = [f.name for f in fields if f.dtype in (Int32, Int64)]

    @classmethod
    def from_registry(cls, paths: Paths | None = None) -> Ranker:
        paths = registry.use_home(paths)
        tag, model = registry.load_champion(CASE)
        return cls(tag, model, core_feast.store(paths))

    def frame(self, user_id: int, ad_ids: list[int]) -> pd.DataFrame:
        """Online features of every (user, ad) pair, typed like the training frame; missing = None/NA."""
        rows = [{"user_id": user_id, "ad_id": a} for a in ad_ids]
        data = self.fs.get_online_features(features=self.features, entity_rows=rows).to_dict()
        frame = pd.DataFrame(data)
        for name in self.int_columns:
            frame[name] = pd.array(data[name], dtype="Int64")
        return frame

    def rank(self, user_id: int, candidate_ad_ids: list[int], device: str = "mobile",
             hour: int | None = None, k: int = 10) -> RankResponse:
        frame = self.frame(user_id, candidate_ad_ids)
        user_known = bool(frame["country"].notna().iloc[0])
        ad_known = frame["advertiser_id"].notna()
        if user_known:
            age = frame["age"].iloc[0]
            tc = frame["target_country"]
            blocked = ad_known & (
                ((tc != "ANY") & (tc != frame["country"].iloc[0]))
                | (frame["min_age"] > age)
                | (frame["max_age"] < age)
            ).fillna(False)
        else:  # cold-start user: nothing to target on
            blocked = pd.Series(False, index=frame.index)
        keep = frame[~blocked.to_numpy(bool)].reset_index(drop=True)
        ads: list[ScoredAd] = []
        if len(keep):
            keep["position"] = SCORING_POSITION
            keep["device"] = device
            keep["hour"] = datetime.now(UTC).hour if hour is None else hour
            p = self.model.predict(keep)
            cold = keep["ad_impressions"].isna().to_numpy(bool)
            order = np.argsort(-p, kind="stable")[:k]
            ads = [ScoredAd(ad_id=int(keep["ad_id"].iat[i]), p_click=float(p[i]), cold_start=bool(cold[i]))
                   for i in order]
        filtered = [int(a) for a in frame.loc[blocked.to_numpy(bool), "ad_id"]]
        return RankResponse(model_tag=self.tag, user_known=user_known, ads=ads, filtered_out=filtered)


class ReadyzWithTag:
    """BentoML owns ``GET /readyz`` (plain 200, empty body); answer it with the model tag once loaded."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/readyz" and scope["method"] in ("GET", "HEAD"):
            try:
                ranker = getattr(bentoml.get_current_service(), "ranker", None)
            except bentoml.exceptions.BentoMLException:  # not instantiated yet: BentoML answers 503
                ranker = None
            if ranker is not None:
                from starlette.responses import JSONResponse

                await JSONResponse({"status": "ready", "model_tag": ranker.tag})(scope, receive, send)
                return
        await self.app(scope, receive, send)


@bentoml.service(
    name=CASE,
    http={"host": "127.0.0.1", "port": 3000},
    workers=SERVING["workers"],
    traffic={"timeout": 30},
)
class AdClick:
    """Loads the champion and opens the feature store once per worker, at start."""

    def __init__(self) -> None:
        import torch

        apply_privacy_defaults()
        # One request scores ~100 rows: intra-op threads only contend with the other workers for the cores.
        torch.set_num_threads(1)
        self.ranker = Ranker.from_registry()
        self.ranker.rank(0, [0], hour=0)  # unknown pair: warms the model and SQLite before traffic

    def __is_ready__(self) -> bool:
        return self.ranker is not None

    @bentoml.api(route="/rank", input_spec=RankRequest, output_spec=RankResponse)
    def rank(self, user_id: int, candidate_ad_ids: list[int], device: str = "mobile", hour: int | None = None,
             k: int = 10) -> RankResponse:
        """Top k candidate ads for a user by calibrated click probability."""
        return self.ranker.rank(user_id, candidate_ad_ids, device=device, hour=hour, k=k)


AdClick.add_asgi_middleware(ReadyzWithTag)  # type: ignore[attr-defined]  # a bentoml Service at runtime
