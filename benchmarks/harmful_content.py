"""harmful_content: flow time per step (``flow_steps.py``) and ``POST /moderate`` latency at 1, 4, 8 clients.

The flow runs in a fresh temporary home (so nothing is cached); the service serves the champion of
CASEBOOK_HOME (run ``casebook run harmful_content`` first). The load generator and the summary are
``service_latency.py``'s; the workload is one post per request: real posts of the validated data, their
authors, and every fifth with an image embedding. Loopback only; the request count is bounded.

    python benchmarks/harmful_content.py                        # flow at the default scale + latency
    python benchmarks/harmful_content.py --scale tiny --no-flow --concurrency 1,4,8 --requests 400
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_latency import _load, machine, print_table, summary

from pipelines.core.settings import Paths, apply_privacy_defaults

CASE = "harmful_content"


def workload(paths: Paths, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Real posts with their authors; every fifth carries its image embedding."""
    posts = pd.concat([pd.read_parquet(f) for f in sorted((paths.validated(CASE) / "posts").glob("*.parquet"))])
    rows = posts.sample(n, replace=len(posts) < n, random_state=seed)
    img = [c for c in rows if c.startswith("img_")]
    out = []
    for i, (_, r) in enumerate(rows.iterrows()):
        body: dict[str, Any] = {"user_id": int(r["author_id"]), "text": str(r["text"])[:5000]}
        if img and i % 5 == 0:
            body["image_embedding"] = [float(v) for v in r[img]]
        out.append(body)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="small", help="scale of the timed flow (default small)")
    ap.add_argument("--no-flow", action="store_true", help="only the service latency")
    ap.add_argument("--concurrency", default="1,4,8", help="concurrent clients, comma-separated")
    ap.add_argument("--requests", type=int, default=400, help="requests per concurrency level (default 400)")
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    if not 1 <= args.requests <= 100_000 or min(levels) < 1:
        ap.error("--requests must be in 1..100000 and every concurrency >= 1")
    apply_privacy_defaults()
    if not args.no_flow:
        subprocess.run([sys.executable, str(Path(__file__).with_name("flow_steps.py")), "--case", CASE,
                        "--scales", args.scale, "--no-deploy"], check=True)
    from pipelines.core.serving import running_service

    paths = Paths.from_env()
    payloads = workload(paths, args.requests)
    rows = []
    with running_service(CASE, paths=paths) as url:
        for c in levels:
            lat, errors, wall, client_cpu = asyncio.run(_load(url, payloads, c, route="/moderate"))
            rows.append(summary("http POST /moderate", c, lat, errors, wall, client_cpu))
    print(f"\nmachine : {machine()}\nservice : home {paths.home}, {args.requests} requests per level\n")
    print_table(rows)
    return 1 if any(r["errors"] for r in rows) or np.isnan([r["p50_ms"] for r in rows]).any() else 0


if __name__ == "__main__":
    sys.exit(main())
