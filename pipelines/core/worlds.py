"""Keep the data of different worlds apart: a home holds one world; any other gets a home of its own.

A world is (source, scale, seed). Two worlds' batches share time-window names (``d000-d014``) and ids, so
landing them in one folder would mix them silently (train on one, test on the other). The home's first
validated batch claims it (``data/world.json``); a run of another world works under
``<home>/worlds/<world id>/`` instead, with its own data, models, feature store, metrics and reports,
and the first world's results stay intact. Commands that read results (report, serve) resolve the
world the same way, so they show the world their options name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

from pipelines.core.case import World
from pipelines.core.io import read_json, write_json
from pipelines.core.settings import Paths


def holder(paths: Paths) -> World | None:
    """The world that claimed this home, if any."""
    marker = paths.data / "world.json"
    return World(**read_json(marker)) if marker.exists() else None


def home_of(world: World, root: Paths | None = None) -> Paths:
    """Where ``world`` lives: the root home if it holds this world (or nothing yet), else its own."""
    root = root or Paths.from_env()
    held = holder(root)
    if held is None or held.id == world.id:
        return root
    return Paths((root.home / "worlds" / world.id).resolve())


def claim(paths: Paths, world: World) -> None:
    """Record that ``paths`` holds ``world``; called once a batch of it passed validation."""
    held = holder(paths)
    if held is None:
        write_json(asdict(world), paths.data / "world.json")
    elif held.id != world.id:  # home_of never sends a run here; a hand-set CASEBOOK_HOME can
        raise RuntimeError(f"{paths.home} holds the world of {held.describe()}, not {world.describe()}")


@contextmanager
def living_in(paths: Paths) -> Iterator[Paths]:
    """Point this process at ``paths`` for the block: Feast's repo, BentoML and services read the env."""
    from pipelines.core import registry

    old = os.environ.get("CASEBOOK_HOME")
    os.environ["CASEBOOK_HOME"] = str(paths.home)
    registry.use_home(paths)
    try:
        yield paths
    finally:
        if old is None:
            os.environ.pop("CASEBOOK_HOME", None)
        else:
            os.environ["CASEBOOK_HOME"] = old
        registry.use_home(Paths.from_env())
