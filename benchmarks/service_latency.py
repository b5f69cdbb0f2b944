"""Latency and throughput of the ad click service for 100-candidate requests, over HTTP and in-process.

Both views, because their difference is the serving overhead: HTTP numbers are what a caller on the same
host sees (BentoML, JSON, loopback), in-process numbers are the floor set by the Feast online reads and
the model. Loopback only; the request count is bounded. The client shares the machine with the server,
so the two compete for CPU: the load generator is a bare keep-alive HTTP/1.1 client with pre-encoded
bodies, and the table prints its CPU per request, the core count and the load average.

    python benchmarks/service_latency.py                       # serves the CASEBOOK_HOME champion
    python benchmarks/service_latency.py --url http://127.0.0.1:3000 --concurrency 1,2,4
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
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

from pipelines.core.features import user_profile_file
from pipelines.core.settings import PROJECT_ROOT, Paths, apply_privacy_defaults

WARMUP = 20
HOST = "127.0.0.1"


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
    users = pd.read_parquet(user_profile_file(paths, "ad_click"), columns=["user_id"])["user_id"]
    ads = pd.read_parquet(paths.features("ad_click") / "ad_profile.parquet", columns=["ad_id"])["ad_id"]
    pool = ads.unique().tolist()
    pool += list(range(max(pool) + 1, max(pool) + 1 + max(0, candidates - len(pool))))
    rng = np.random.default_rng(seed)
    return [{"user_id": int(rng.choice(users)),
             "candidate_ad_ids": [int(a) for a in rng.choice(pool, candidates, replace=False)],
             "device": "mobile", "hour": 12, "k": 10} for _ in range(n)]


def summary(mode: str, concurrency: int, latencies: list[float], errors: int,
            wall: float | None, client_cpu_ms: float | None = None) -> dict[str, Any]:
    ms = np.asarray(latencies) * 1000
    return {"mode": mode, "concurrency": concurrency, "requests": len(latencies), "errors": errors,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
            "req_per_s": len(latencies) / wall if wall else 1000 / float(np.mean(ms)),
            "client_cpu_ms": client_cpu_ms,
            "load": os.getloadavg()[0]}  # the 1-minute load right after the level: was the box quiet?


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print ``summary`` rows as one table: every benchmark reports latency the same way, max and load included."""
    width = max(28, *(len(r["mode"]) for r in rows))
    head = (f"{'mode':<{width}} {'conc':>4} {'n':>6} {'err':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'req/s':>8} {'client':>7} {'load1':>6}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        client = "" if r["client_cpu_ms"] is None else f"{r['client_cpu_ms']:.2f}"
        print(f"{r['mode']:<{width}} {r['concurrency']:>4} {r['requests']:>6} {r['errors']:>4} "
              f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} {r['req_per_s']:>8.1f} {client:>7} "
              f"{r['load']:>6.1f}")


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs pre-encoded JSON: a load generator that costs little.

    The client shares the 2 cores with the server, so every millisecond of client CPU is taken from the
    service under test; httpx spent ~3 ms of CPU per request here, as much as the service itself.
    """

    def __init__(self, url: str) -> None:
        parts = urlparse(url)
        self.host, self.port = parts.hostname or HOST, parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        """Send one request, read the whole answer; returns the HTTP status."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(), len(body), body))
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        status = int(head.split(" ", 2)[1])
        if "transfer-encoding: chunked" in head:
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")
        else:
            length = next((int(h.split(":", 1)[1]) for h in head.split("\r\n") if h.startswith("content-length:")), 0)
            await self.reader.readexactly(length)
        if "connection: close" in head:
            await self.close()
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()
            self.reader = self.writer = None


async def _load(url: str, payloads: list[dict[str, Any]], concurrency: int, route: str = "/rank",
                seconds: float | None = None) -> tuple[list[float], int, float, float]:
    """``concurrency`` clients each sending its next request as soon as the previous one answered.

    With ``seconds``, the payloads are cycled for that long (a sustained run: stalls that come every few
    seconds show in p99 and max, which a few hundred requests can miss). Returns the latencies, the
    error count, the wall time and the client's own CPU ms per request.
    """
    bodies = [json.dumps(p).encode() for p in payloads]  # encoded up front: not timed, not competing
    latencies: list[float] = []
    errors = 0
    connections = [Connection(url) for _ in range(concurrency)]

    deadline = float("inf")

    async def worker(conn: Connection, queue: Iterator[bytes]) -> None:
        nonlocal errors
        for body in queue:
            if time.perf_counter() > deadline:
                break
            start = time.perf_counter()
            status = await conn.post(route, body)
            latencies.append(time.perf_counter() - start)
            errors += status != 200

    for conn in connections:  # open every connection and warm the server first
        await worker(conn, iter(bodies[:WARMUP // concurrency + 1]))
    latencies.clear()
    errors = 0
    # shared: each client takes the next request when it is free
    queue = itertools.cycle(bodies) if seconds else iter(bodies)
    cpu, start = time.process_time(), time.perf_counter()
    if seconds:
        deadline = start + seconds
    await asyncio.gather(*(worker(conn, queue) for conn in connections))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    for conn in connections:
        await conn.close()
    return latencies, errors, wall, cpu * 1000 / max(len(latencies), 1)


def sustained_options(ap: argparse.ArgumentParser, workloads: tuple[str, ...]) -> None:
    """The options of a sustained service benchmark: levels, seconds per level, workloads, flow or not."""
    ap.add_argument("--concurrency", default="1,4,8", help="concurrent clients, comma-separated")
    ap.add_argument("--seconds", type=float, default=60.0, help="sustained run per level and workload (default 60)")
    ap.add_argument("--workloads", default=",".join(workloads), help=f"comma-separated: {', '.join(workloads)}")
    ap.add_argument("--no-flow", action="store_true", help="serve the current CASEBOOK_HOME's champion")


def sustained_args(ap: argparse.ArgumentParser, args: argparse.Namespace, workloads: tuple[str, ...]
                   ) -> tuple[list[int], list[str]]:
    """(concurrency levels, workload names) of ``sustained_options``, or the parser's usage error."""
    levels = [int(c) for c in args.concurrency.split(",")]
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if bad := sorted(set(names) - set(workloads)):
        ap.error(f"unknown workload(s) {bad}; choose from {', '.join(workloads)}")
    if min(levels) < 1 or not 1 <= args.seconds <= 600:
        ap.error("every concurrency must be >= 1 and --seconds in 1..600")
    return levels, names


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
    import torch

    sys.path.insert(0, str(PROJECT_ROOT))
    from services.ad_click.service import Ranker

    torch.set_num_threads(1)  # as in each service worker
    ranker = Ranker.from_registry(paths)
    rank = _timed(lambda b: ranker.rank(**b), payloads)
    read = _timed(lambda b: ranker.features(b["user_id"], b["candidate_ad_ids"]), payloads)
    return ranker.tag, [summary("in-process rank (read+filter+predict)", 1, rank, 0, None),
                        summary("in-process Feast reads only", 1, read, 0, None)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="1,4,8", help="concurrent clients, comma-separated")
    ap.add_argument("--requests", type=int, default=400, help="requests per concurrency level (default 400)")
    ap.add_argument("--candidates", type=int, default=100, help="candidate ads per request (default 100)")
    ap.add_argument("--inprocess-calls", type=int, default=200, help="in-process scoring calls (default 200)")
    ap.add_argument("--url", help="a running service on loopback; default: start one on the current champion")
    ap.add_argument("--seconds", type=float, default=None,
                    help="sustained run: each level sends for this long (e.g. 60) instead of --requests")
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
            lat, errors, wall, client_cpu = asyncio.run(_load(url, payloads, c, seconds=args.seconds))
            rows.append(summary("http POST /rank", c, lat, errors, wall, client_cpu))
    tag, local = in_process(paths, workload(paths, args.inprocess_calls, args.candidates, seed=1))
    rows += local

    print(f"\nmachine : {machine()}")
    print(f"service : {args.url or 'started by running_service'}  model {tag}  home {paths.home}")
    per_level = f"{args.seconds:.0f} s" if args.seconds else f"{args.requests} HTTP requests"
    print(f"workload: {args.candidates} candidates, k=10, {per_level} per level, "
          f"{args.inprocess_calls} in-process calls\n")
    print_table(rows)
    print("\nin-process req/s is 1 / mean latency of a single caller; client is the load generator's own CPU ms "
          "per request (taken from the same cores); load1 is the 1-minute load average after each row (this "
          "benchmark adds ~1-2 while it runs).")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
