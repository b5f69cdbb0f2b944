"""Event recommendation: flow time per step at one scale, then service latency p50/p99 and req/s.

Runs the case's flow set (ingest through deploy, so a champion serves) in a fresh temporary home with
``flow_steps.run_case``, then drives the service with ``service_latency``'s load generator at 1, 4 and 8
clients: known users at home (the default radius and horizon), a share of cold-start users at a city
centre, and a "dense" workload (the largest radius and horizon a request may ask for) where a user has
every upcoming event of the world as a candidate before filtering. Loopback only; bounded requests.

    python benchmarks/event_recommendation.py --scale small --concurrency 1,4,8
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe
from flow_steps import fresh_home, run_case
from service_latency import _load, summary

from pipelines.core.settings import Paths, apply_privacy_defaults

CASE = "event_recommendation"


def workload(paths: Paths, n: int, dense: bool, cold_share: float, seed: int = 0) -> list[dict[str, Any]]:
    from pipelines.core.params import case_params
    from pipelines.event_recommendation.case import CASE as SPEC

    serving = case_params(SPEC, paths=paths).serving
    homes = pd.read_parquet(paths.features(CASE) / "user_home.parquet")
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        row = homes.iloc[int(rng.integers(len(homes)))]
        body: dict[str, Any] = {"user_id": int(row["user_id"]), "k": 10}
        if rng.random() < cold_share:
            body = {"user_id": int(10**12 + rng.integers(10**6)), "k": 10, "lat": float(row["home_lat"]),
                    "lon": float(row["home_lon"])}
        if dense:
            body |= {"radius_km": serving.max_radius_km, "days": serving.max_days}
        out.append(body)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="small", choices=["tiny", "small", "large"])
    ap.add_argument("--concurrency", default="1,4,8", help="concurrent clients, comma-separated")
    ap.add_argument("--requests", type=int, default=300, help="requests per level and workload (default 300)")
    ap.add_argument("--cold-share", type=float, default=0.1)
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    apply_privacy_defaults()
    from prefect.testing.utilities import prefect_test_harness

    from pipelines.core.serving import running_service

    home = fresh_home(args.scale)
    print(f"machine: {describe()}\nscale: {args.scale}  home: {home}")
    with prefect_test_harness(server_startup_timeout=120):
        wall, body, whole, rows = run_case(CASE, deploy=True)
    print(f"\nflow {whole:.1f} s; {rows:,} rows in the largest raw table")
    for step, secs in wall.items():
        print(f"  {step:<10}{secs:>8.1f} s (body {body.get(step, 0.0):.1f} s)")
    paths = Paths.from_env()
    table: list[dict[str, Any]] = []
    with running_service(CASE, paths=paths) as url:
        import httpx

        for dense in (False, True):
            payloads = workload(paths, args.requests, dense, args.cold_share)
            r = httpx.post(f"{url}/recommend", json=payloads[0], timeout=30).json()
            name = f"{'dense' if dense else 'home'} (~{r['candidates']} pass filter)"
            for c in levels:
                lat, errors, secs, cpu = asyncio.run(_load(url, payloads, c, route="/recommend"))
                table.append(summary(name, c, lat, errors, secs, cpu))
    head = f"{'workload':<34} {'conc':>4} {'n':>5} {'err':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}"
    print("\n" + head + "\n" + "-" * len(head))
    for t in table:
        print(f"{t['mode']:<34} {t['concurrency']:>4} {t['requests']:>5} {t['errors']:>4} {t['p50_ms']:>8.1f} "
              f"{t['p99_ms']:>8.1f} {t['req_per_s']:>8.1f}")
    return 1 if any(t["errors"] for t in table) else 0


if __name__ == "__main__":
    sys.exit(main())
