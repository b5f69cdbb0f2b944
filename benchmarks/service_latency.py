"""Latency and throughput of the ad click service for 100-candidate requests, over HTTP and in-process.

Both views, because their difference is the serving overhead: HTTP numbers are what a caller on the same
host sees (BentoML, JSON, loopback), in-process numbers are the floor set by the Feast online read and
the model. Loopback only; the request count is bounded. The client shares the machine with the server,
so at high concurrency on few cores the two compete for CPU (the table prints the core count).

    python benchmarks/service_latency.py                       # serves the CASEBOOK_HOME champion
    python benchmarks/service_latency.py --url http://127.0.0.1:3000 --concurrency 1,2,4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from pipelines.core.settings import PROJECT_ROOT, Paths, apply_privacy_defaults

WARMUP = 20


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())  # other work on the box skews every number
    return (f"{os.cpu_count()} CPUs ({usable} usable), {model}; load avg {load}; "
            f"Python {platform.python_version()}; {platform.platform()}")


def workload(paths: Paths, n: int, candidates: int, seed: int = 0) -> list[dict[str, Any]]:
    """Requests for known users over known ads (padded with unknown ids if the world has too few ads)."""
    users = pd.read_parquet(paths.features("shared") / "user_profile.parquet", columns=["user_id"])["user_id"]
    ads = pd.read_parquet(paths.features("ad_click") / "ad_profile.parquet", columns=["ad_id"])["ad_id"]
    pool = ads.unique().tolist()
    pool += list(range(max(pool) + 1, max(pool) + 1 + max(0, candidates - len(pool))))
    rng = np.random.default_rng(seed)
    return [{"user_id": int(rng.choice(users)),
             "candidate_ad_ids": [int(a) for a in rng.choice(pool, candidates, replace=False)],
             "device": "mobile", "hour": 12, "k": 10} for _ in range(n)]


def summary(mode: str, concurrency: int, latencies: list[float], errors: int,
            wall: float | None) -> dict[str, Any]:
    ms = np.asarray(latencies) * 1000
    return {"mode": mode, "concurrency": concurrency, "requests": len(latencies), "errors": errors,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "req_per_s": len(latencies) / wall if wall else 1000 / float(np.mean(ms))}


async def _load(url: str, payloads: list[dict[str, Any]], concurrency: int) -> tuple[list[float], int, float]:
    """``concurrency`` clients each sending its next request as soon as the previous one answered."""
    import httpx

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def worker(queue: Iterator[dict[str, Any]]) -> None:
            nonlocal errors
            for body in queue:
                start = time.perf_counter()
                r = await client.post("/rank", json=body)
                latencies.append(time.perf_counter() - start)
                errors += r.status_code != 200

        warm = iter(payloads[:WARMUP])  # open the connections and warm the server first
        await asyncio.gather(*(worker(warm) for _ in range(concurrency)))
        latencies.clear()
        errors = 0
        queue = iter(payloads)  # shared: each client takes the next request when it is free
        start = time.perf_counter()
        await asyncio.gather(*(worker(queue) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, errors, wall


def _timed(fn: Callable[[dict[str, Any]], Any], payloads: list[dict[str, Any]]) -> list[float]:
    for body in payloads[:WARMUP]:
        fn(body)
    out = []
    for body in payloads:
        start = time.perf_counter()
        fn(body)
        out.append(time.perf_counter() - start)
    return out


def in_process(paths: Paths, payloads: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The same request path without HTTP: Ranker.rank, and the Feast read alone."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from services.ad_click.service import Ranker

    ranker = Ranker.from_registry(paths)
    rank = _timed(lambda b: ranker.rank(**b), payloads)
    read = _timed(lambda b: ranker.frame(b["user_id"], b["candidate_ad_ids"]), payloads)
    return ranker.tag, [summary("in-process rank (read+filter+predict)", 1, rank, 0, None),
                        summary("in-process Feast read only", 1, read, 0, None)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="1,4,8", help="concurrent clients, comma-separated")
    ap.add_argument("--requests", type=int, default=400, help="requests per concurrency level (default 400)")
    ap.add_argument("--candidates", type=int, default=100, help="candidate ads per request (default 100)")
    ap.add_argument("--inprocess-calls", type=int, default=200, help="in-process scoring calls (default 200)")
    ap.add_argument("--url", help="a running service on loopback; default: start one on the current champion")
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.url and urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        ap.error("--url must be a loopback address: this benchmark only loads local services")
    if not 1 <= args.requests <= 100_000 or min(levels) < 1:
        ap.error("--requests must be in 1..100000 and every concurrency >= 1")

    apply_privacy_defaults()
    paths = Paths.from_env()
    payloads = workload(paths, args.requests, args.candidates)
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        url = args.url
        if url is None:
            from pipelines.core.serving import running_service

            started = time.perf_counter()
            url = stack.enter_context(running_service("ad_click"))
            print(f"started {url} in {time.perf_counter() - started:.1f}s", flush=True)
        for c in levels:
            lat, errors, wall = asyncio.run(_load(url, payloads, c))
            rows.append(summary("http POST /rank", c, lat, errors, wall))
    tag, local = in_process(paths, workload(paths, args.inprocess_calls, args.candidates, seed=1))
    rows += local

    print(f"\nmachine : {machine()}")
    print(f"service : {args.url or 'started by running_service'}  model {tag}  home {paths.home}")
    print(f"workload: {args.candidates} candidates, k=10, {args.requests} HTTP requests per level, "
          f"{args.inprocess_calls} in-process calls\n")
    head = f"{'mode':<38} {'conc':>4} {'n':>5} {'err':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['mode']:<38} {r['concurrency']:>4} {r['requests']:>5} {r['errors']:>4} "
              f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['req_per_s']:>8.1f}")
    print("\nin-process req/s is 1 / mean latency of a single caller.")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
