"""The base every case's BentoML service stands on, so a case's service file holds only what is its own.

``services/<case>/service.py`` declares its request/response models, a handler (the request path
without HTTP: a ``ChampionHandler`` naming its case spec, the item views it may cache and a
``warm_up`` request) and the binding::

    @bentoml.service(**service_options(SPEC))
    class AdClick(CaseService):
        handler_type = Ranker
        rank = handler_api("/rank", RankRequest, RankResponse, "Top k candidate ads for a user ...")

The base, in each worker, loads the model to serve from the registry (the case's champion, or the
challenger ``running_service(model_tag=...)`` puts on trial) and opens the case's FeatureService online,
keeps torch to one thread where the model uses it and warms up before traffic. It binds to loopback
with workers and timeout from ``<case>.serving`` and adds the middlewares of ``pipelines.core.api``
(``/readyz`` with the tag, validated requests, private docs). ``pipelines.core.serving`` builds the Bento.

The API methods are ``async def`` although they never await: a request is ~5 ms of GIL-bound Python on a
local SQLite read, so BentoML's thread pool (what a plain ``def`` gets) adds two thread hand-offs and
GIL contention per request and no parallelism; measured, it doubles latency under load. With a remote
online store (Redis, Postgres) make them plain ``def`` so network waits overlap.
"""

from __future__ import annotations

import gc
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import bentoml
from pydantic import BaseModel

from pipelines.core import feast as core_feast
from pipelines.core import registry
from pipelines.core.api import PrivateDocs, ReadyzWithTag, ValidateRequests
from pipelines.core.case import CaseSpec
from pipelines.core.online import OnlineReader
from pipelines.core.params import case_params
from pipelines.core.serving import HOST, MODEL_TAG_ENV, WORKERS_ENV
from pipelines.core.settings import Paths, apply_privacy_defaults


def serving_params(spec: CaseSpec, paths: Paths | None = None) -> Any:
    """The case's checked ``serving`` params (its typed model): workers, item cache TTL, request limits."""
    return case_params(spec, paths=paths).serving  # type: ignore[attr-defined]  # each case's model has one


def service_options(spec: CaseSpec) -> dict[str, Any]:
    """``bentoml.service`` keyword arguments: loopback, workers and timeout from ``<case>.serving``.

    ``$CASEBOOK_SERVICE_WORKERS`` (set by ``running_service(workers=...)``) overrides the worker count.
    """
    serving = serving_params(spec)
    workers = int(os.environ.get(WORKERS_ENV) or serving.workers)
    return {"name": spec.name, "http": {"host": HOST, "port": 3000}, "workers": workers,
            "traffic": {"timeout": serving.timeout_s}, "service_class": _CaseService}


class _CaseService(bentoml.Service):  # type: ignore[type-arg]
    """A BentoML Service that adds the core's middlewares: every case's service gets the same edge."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.add_asgi_middleware(ReadyzWithTag)
        self.add_asgi_middleware(ValidateRequests, service=self)
        self.add_asgi_middleware(PrivateDocs, service=self)


def load_served(case: str) -> tuple[str, object]:
    """The tag and model to serve: ``$CASEBOOK_MODEL_TAG`` (a challenger on trial) or the champion."""
    tag = os.environ.get(MODEL_TAG_ENV)
    if not tag:
        return registry.load_champion(case)
    if tag.split(":")[0] != case:
        raise LookupError(f"{MODEL_TAG_ENV}={tag} is not a model of case '{case}'")
    return tag, registry.load(tag)


@dataclass
class ChampionHandler(ABC):
    """The request path without HTTP: the served model and the case's online features, per worker."""

    case: ClassVar[CaseSpec]
    cached_views: ClassVar[tuple[str, ...]] = ()
    """Views keyed by item alone and materialized daily: kept per worker for ``item_cache_ttl_s`` seconds."""
    tag: str
    model: Any
    reader: OnlineReader

    @classmethod
    def from_registry(cls, paths: Paths | None = None) -> Self:
        """The model to serve and a reader of the case's FeatureService on this home's online store."""
        paths = registry.use_home(paths)
        if cls.case.features is None:
            raise TypeError(f"case '{cls.case.name}' declares no Feast features: a ChampionHandler reads them")
        tag, model = load_served(cls.case.name)
        reader = OnlineReader(core_feast.store(paths), cls.case.features.service, cached_views=cls.cached_views,
                              ttl_s=serving_params(cls.case, paths).item_cache_ttl_s)
        return cls(tag, model, reader)

    @abstractmethod
    def warm_up(self) -> None:
        """Answer one request (a cold-start one), so the first real request pays no lazy loading."""


class CaseService:
    """What BentoML instantiates once per worker: loads and warms the handler, exposes ``model_tag``."""

    handler_type: ClassVar[type[ChampionHandler]]

    def __init__(self) -> None:
        apply_privacy_defaults()
        self.handler = self.handler_type.from_registry()
        if "torch" in sys.modules:  # the model uses torch: a request is small, so intra-op threads
            sys.modules["torch"].set_num_threads(1)  # would only contend with the other workers for cores
        self.model_tag = self.handler.tag  # what /readyz answers with
        self.handler.warm_up()
        # The model, Feast and pandas leave ~400k tracked objects that live as long as the worker: a full
        # GC pass over them took 165-190 ms (measured 2026-12-03), a stall for whichever request
        # triggered it. Frozen, the collector skips them; requests' own garbage is still collected.
        gc.collect()
        gc.freeze()


def handler_api(route: str, request: type[BaseModel], response: type[BaseModel], doc: str) -> Any:
    """A BentoML API at ``route`` answered by the handler's method of the route's name.

    BentoML validates the body as ``request`` and calls the method with its fields as keyword arguments.
    """
    name = route.strip("/")

    async def api(self: CaseService, **fields: Any) -> Any:
        return getattr(self.handler, name)(**fields)

    api.__name__ = api.__qualname__ = name
    api.__doc__ = doc
    return bentoml.api(route=route, input_spec=request, output_spec=response)(api)
