"""Latency and throughput of the video recommendation service for top-10 requests, over HTTP and in-process.

The load generator, the summary and the machine line are ``service_latency.py``'s; this script supplies
the video workload (known users, and a share of cold-start users with context) and the in-process path
(the same ``Recommender.recommend`` the service calls: candidate generation, Feast online reads, ranker,
re-ranking). Loopback only; the request count is bounded.

    python benchmarks/video_service_latency.py                 # serves the CASEBOOK_HOME champion
    python benchmarks/video_service_latency.py --concurrency 1,4,8 --cold-share 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_latency import _load, _timed, machine, print_table, summary

from pipelines.core.features import user_profile_file
from pipelines.core.settings import PROJECT_ROOT, Paths, apply_privacy_defaults

CASE = "video_recommendation"


def workload(paths: Paths, n: int, k: int, cold_share: float, seed: int = 0) -> list[dict[str, Any]]:
    """Requests for users with a profile, and ``cold_share`` of them for unknown users with context."""
    users = pd.read_parquet(user_profile_file(paths, CASE), columns=["user_id"])["user_id"]
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        if rng.random() < cold_share:
            out.append({"user_id": int(10**12 + rng.integers(10**6)), "k": k, "country": "US", "age": 30})
        else:
            out.append({"user_id": int(rng.choice(users)), "k": k})
    return out


def in_process(paths: Paths, payloads: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The request path without HTTP."""
    import torch

    sys.path.insert(0, str(PROJECT_ROOT))
    from services.video_recommendation.service import Recommender

    torch.set_num_threads(1)  # as in each service worker
    rec = Recommender.from_registry(paths)
    times = _timed(lambda b: rec.recommend(b["user_id"], b["k"], country=b.get("country"), age=b.get("age")),
                   payloads)
    return rec.tag, [summary("in-process recommend", 1, times, 0, None)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="1,4,8", help="concurrent clients, comma-separated")
    ap.add_argument("--requests", type=int, default=400, help="requests per concurrency level (default 400)")
    ap.add_argument("--k", type=int, default=10, help="videos per response (default 10)")
    ap.add_argument("--cold-share", type=float, default=0.1, help="share of cold-start users (default 0.1)")
    ap.add_argument("--inprocess-calls", type=int, default=200, help="in-process calls (default 200)")
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    if not 1 <= args.requests <= 100_000 or min(levels) < 1 or not 0 <= args.cold_share <= 1:
        ap.error("--requests must be in 1..100000, every concurrency >= 1 and --cold-share in [0, 1]")

    apply_privacy_defaults()
    paths = Paths.from_env()
    payloads = workload(paths, args.requests, args.k, args.cold_share)
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        from pipelines.core.serving import running_service

        started = time.perf_counter()
        url = stack.enter_context(running_service(CASE))
        print(f"started {url} in {time.perf_counter() - started:.1f}s", flush=True)
        for c in levels:
            lat, errors, wall, client_cpu = asyncio.run(_load(url, payloads, c, route="/recommend"))
            rows.append(summary("http POST /recommend", c, lat, errors, wall, client_cpu))
    tag, local = in_process(paths, workload(paths, args.inprocess_calls, args.k, args.cold_share, seed=1))
    rows += local

    print(f"\nmachine : {machine()}")
    print(f"service : model {tag}  home {paths.home}")
    print(f"workload: top-{args.k}, {args.cold_share:.0%} cold-start users, {args.requests} HTTP requests per "
          f"level, {args.inprocess_calls} in-process calls\n")
    print_table(rows)
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
