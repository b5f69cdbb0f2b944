"""Event recommendation: flow time per step at one scale, then service latency p50/p99/max and req/s.

Runs the case's flow set (ingest through deploy, so a champion serves) in a fresh temporary home with
``flow_steps.run_case`` (or, with ``--no-flow``, serves the current CASEBOOK_HOME's champion), then
drives the service with ``service_latency``'s load generator at 1, 4 and 8 clients, each level a
sustained run of ``--seconds`` (default 60 s): known users at home (the default radius and horizon,
a share of cold-start users at their city centre) and the "dense" workload, where every request has
as many upcoming events in range before filtering as the world allows, up to ``--dense-events``:

* the request's location is the venue with the most upcoming events (at the model's clock) within the
  largest radius and horizon a request may ask for, and the request asks for that radius and horizon;
* when no disc of ``serving.max_radius_km`` holds ``--dense-events`` upcoming events, the radius is
  widened until it does (a fresh home's params allow it; ``--no-flow`` keeps the home's limit) or
  covers the whole world (then the printed count is all the world has: the small world keeps ~850
  events upcoming at a time, the large one ~8x as many).

Loopback only; bounded requests.

    python benchmarks/event_recommendation.py --scale small --concurrency 1,4,8 --seconds 60
    python benchmarks/event_recommendation.py --no-flow --workloads dense   # the current home's champion
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe
from flow_steps import timed_flow
from service_latency import _load, print_table, summary, sustained_args, sustained_options

from pipelines.core.settings import Paths, apply_privacy_defaults

CASE = "event_recommendation"
WORKLOADS = ("home", "dense")
WORLD_KM = 20_040.0
"""Half the Earth's circumference: a disc this wide holds every event."""


def dense_location(paths: Paths, now_s: float, radius_km: float, days: float, target: int
                   ) -> tuple[float, float, float, int]:
    """(lat, lon, radius, upcoming events in range): the densest venue, the radius widened to ``target``."""
    from pipelines.event_recommendation.model import Catalog

    cat = Catalog.of(pd.read_parquet(paths.features(CASE) / "event_profile.parquet"))
    live = cat.upcoming(None, None, now_s, radius_km, days)[0]
    if not len(live):
        raise SystemExit("no upcoming events at the model's clock: nothing to benchmark")
    best = max(live, key=lambda i: len(cat.upcoming(cat.lat[i], cat.lon[i], now_s, radius_km, days)[0]))
    lat, lon = float(cat.lat[best]), float(cat.lon[best])
    while radius_km < WORLD_KM and len(cat.upcoming(lat, lon, now_s, radius_km, days)[0]) < target:
        radius_km = min(WORLD_KM, radius_km * 2)
    return lat, lon, radius_km, len(cat.upcoming(lat, lon, now_s, radius_km, days)[0])


def workload(paths: Paths, n: int, cold_share: float, dense: dict[str, Any] | None = None, seed: int = 0
             ) -> list[dict[str, Any]]:
    """Known users (a ``cold_share`` of unknown ids at a home's coordinates); ``dense`` overrides fields."""
    homes = pd.read_parquet(paths.features(CASE) / "user_home.parquet")
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        row = homes.iloc[int(rng.integers(len(homes)))]
        body: dict[str, Any] = {"user_id": int(row["user_id"]), "k": 10}
        if rng.random() < cold_share:
            body = {"user_id": int(10**12 + rng.integers(10**6)), "k": 10, "lat": float(row["home_lat"]),
                    "lon": float(row["home_lon"])}
        out.append(body | (dense or {}))
    return out


def allow_radius(home: Path, radius_km: float) -> None:
    """Let requests of the fresh benchmark home ask for ``radius_km`` (before the service starts)."""
    params = yaml.safe_load((home / "params.yaml").read_text())
    serving = params[CASE].setdefault("serving", {})
    serving["max_radius_km"] = max(radius_km, serving.get("max_radius_km", 0.0))
    (home / "params.yaml").write_text(yaml.safe_dump(params))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="small", choices=["tiny", "small", "large"])
    ap.add_argument("--dense-events", type=int, default=1_000, help="upcoming events in range for the dense user")
    ap.add_argument("--cold-share", type=float, default=0.1)
    sustained_options(ap, WORKLOADS)
    args = ap.parse_args(argv)
    levels, names = sustained_args(ap, args, WORKLOADS)
    apply_privacy_defaults()
    from pipelines.core.params import case_params
    from pipelines.core.serving import running_service
    from pipelines.event_recommendation.case import CASE as SPEC

    print(f"machine: {describe()}")
    if not args.no_flow:
        timed_flow(CASE, args.scale)
    paths = Paths.from_env()
    serving = case_params(SPEC, paths=paths).serving
    # the service's clock when a request does not say: the model's as_of, the last impression it saw
    now = pd.Timestamp(pd.read_parquet(paths.validated(CASE) / "impressions", columns=["event_timestamp"])
                       ["event_timestamp"].max())
    limit = serving.max_radius_km if args.no_flow else WORLD_KM
    lat, lon, radius, n_dense = dense_location(paths, now.timestamp(), serving.max_radius_km, serving.max_days,
                                               args.dense_events)
    radius = min(radius, limit)
    if radius > serving.max_radius_km:
        allow_radius(paths.home, radius)
    dense = {"lat": lat, "lon": lon, "radius_km": radius, "days": serving.max_days, "at": now.isoformat()}
    print(f"\ndense request: at ({lat:.3f}, {lon:.3f}), radius {radius:,.0f} km, {serving.max_days:g} days, "
          f"at {now}: {n_dense:,} upcoming events in range before filtering (asked for {args.dense_events:,})")
    table: list[dict[str, Any]] = []
    with running_service(CASE, paths=paths) as url:
        import httpx

        for name, extra in ((n, dense if n == "dense" else None) for n in names):
            payloads = workload(paths, 500, args.cold_share, extra)
            r = httpx.post(f"{url}/recommend", json=payloads[0], timeout=30).json()
            label = f"{name} (~{r['candidates']} pass the filter)"
            for c in levels:
                lat_s, errors, secs, cpu = asyncio.run(_load(url, payloads, c, route="/recommend",
                                                             seconds=args.seconds))
                table.append(summary(label, c, lat_s, errors, secs, cpu))
    print(f"\n{args.seconds:.0f} s per level, loopback HTTP\n")
    print_table(table)
    return 1 if any(t["errors"] for t in table) else 0


if __name__ == "__main__":
    sys.exit(main())
