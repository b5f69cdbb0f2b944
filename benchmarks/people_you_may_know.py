"""People you may know: flow time per step, batch precompute throughput, then service latency per workload.

Runs the case's flow set (ingest through monitor, so a champion serves and its lists are in the serving
table) in a fresh temporary home with ``flow_steps.run_case`` (or, with ``--no-flow``, serves the current
CASEBOOK_HOME's champion); prints the batch step's users/s from its own summary; then drives the service
with ``service_latency``'s load generator at each concurrency, a sustained run of ``--seconds`` per level
and workload:

* ``precomputed``: users with a list in the serving table (one indexed SQLite read);
* ``fallback``: users with friends but no list (inactive when the batch step ran): friends of friends
  ranked by Adamic-Adar on demand, the most-connected such users first (the slowest requests).

Loopback only; bounded requests.

    python benchmarks/people_you_may_know.py --scale small --concurrency 1,4,8 --seconds 60
    python benchmarks/people_you_may_know.py --no-flow --workloads fallback
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe
from flow_steps import timed_flow
from service_latency import _load, print_table, summary, sustained_args, sustained_options

from pipelines.core.settings import Paths, apply_privacy_defaults

CASE = "people_you_may_know"
USERS = 500
WORKLOADS = ("precomputed", "fallback")


def workload(store: Path, list_id: str, kind: str) -> list[dict[str, Any]]:
    """Request bodies for ``USERS`` users of one kind (see the module docstring), k = 10."""
    from pipelines.people_you_may_know.store import ListStore

    table = ListStore(store)
    users = table.users_with_list(list_id, USERS) if kind == "precomputed" else table.users_without_list(list_id, USERS)
    if not users:
        raise SystemExit(f"no {kind} user in {store}: nothing to benchmark")
    return [{"user_id": u, "k": 10} for u in users]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="small", choices=["tiny", "small", "large"])
    sustained_options(ap, WORKLOADS)
    args = ap.parse_args(argv)
    levels, names = sustained_args(ap, args, WORKLOADS)
    apply_privacy_defaults()
    from pipelines.core import registry
    from pipelines.core.serving import running_service
    from pipelines.people_you_may_know.pipeline import STORE

    print(f"machine: {describe()}")
    if not args.no_flow:
        timed_flow(CASE, args.scale)
    paths = Paths.from_env()
    batch = json.loads((paths.work(CASE) / "precompute.json").read_text())
    print(f"\nbatch precompute: {batch['users_with_list']:,} users' lists ({batch['rows']:,} rows) of "
          f"{batch['active_users']:,} active users in {batch['seconds']:.2f} s = "
          f"{batch['users_with_list'] / max(batch['seconds'], 1e-9):,.0f} users/s")
    registry.use_home(paths)
    _, model = registry.load_champion(CASE)
    table: list[dict[str, Any]] = []
    with running_service(CASE, paths=paths) as url:
        for name in names:
            payloads = workload(paths.work(CASE) / STORE, model.list_id, name)
            for c in levels:
                lat_s, errors, secs, cpu = asyncio.run(_load(url, payloads, c, route="/recommend",
                                                             seconds=args.seconds))
                table.append(summary(f"{name} ({len(payloads)} users)", c, lat_s, errors, secs, cpu))
    print(f"\n{args.seconds:.0f} s per level, loopback HTTP\n")
    print_table(table)
    return 1 if any(t["errors"] for t in table) else 0


if __name__ == "__main__":
    sys.exit(main())
