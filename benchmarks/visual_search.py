"""visual_search's numbers: flow time per step, training and index build time, service latency and req/s.

The flow runs once in a fresh temporary CASEBOOK_HOME at the chosen scale (``flow_steps.py``'s harness);
then the champion it deployed is served and loaded with held-out query images (base64 JSON, top 10)
from 1, 4 and 8 concurrent clients (``service_latency.py``'s load generator), and the same request path
is timed in-process. Loopback only; the request count is bounded, or ``--seconds`` sustains each level.

    python benchmarks/visual_search.py                       # default scale (small)
    python benchmarks/visual_search.py --seconds 60          # sustained: p99 and max over 60 s a level
    python benchmarks/visual_search.py --scale tiny --concurrency 1,4,8 --requests 400
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe
from flow_steps import fresh_home, run_case
from service_latency import _load, _timed, print_table, summary

from pipelines.core.settings import PROJECT_ROOT, Paths, apply_privacy_defaults

CASE = "visual_search"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="small", choices=["tiny", "small", "large"])
    ap.add_argument("--concurrency", default="1,4,8", help="concurrent clients, comma-separated")
    ap.add_argument("--requests", type=int, default=400, help="requests per concurrency level (default 400)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="sustained run: each level sends for this long (e.g. 60) instead of --requests")
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    if not 1 <= args.requests <= 100_000 or min(levels) < 1:
        ap.error("--requests must be in 1..100000 and every concurrency >= 1")
    apply_privacy_defaults()
    from pipelines.core.console import route_logs

    log = route_logs(verbose=False)
    from prefect.testing.utilities import prefect_test_harness

    home = fresh_home(args.scale)
    with prefect_test_harness(server_startup_timeout=120):
        wall, body, whole, _ = run_case(CASE, deploy=True)
    paths = Paths(home)
    work = paths.work(CASE)
    lineage = json.loads((work / "artifacts" / "lineage.json").read_text())
    index = json.loads((work / "index.json").read_text())
    metrics = json.loads(paths.metrics(CASE).read_text())

    from pipelines.cases import spec
    from pipelines.core.flowset import open_run
    from pipelines.core.serving import running_service

    images = open_run(spec(CASE)).validated("images")
    queries = images[images["split"] == "query"]["png"].tolist()
    payloads = [{"image_b64": queries[i % len(queries)], "k": 10} for i in range(args.requests)]
    rows: list[dict[str, Any]] = []
    with running_service(CASE, paths=paths) as url:
        for c in levels:
            lat, errors, seconds, client_cpu = asyncio.run(_load(url, payloads, c, route="/search",
                                                                  seconds=args.seconds))
            rows.append(summary("http POST /search (json)", c, lat, errors, seconds, client_cpu))
    import torch

    sys.path.insert(0, str(PROJECT_ROOT))
    from services.visual_search.service import Searcher

    torch.set_num_threads(1)  # as in each service worker
    searcher = Searcher.from_registry(paths)
    rows.append(summary("in-process search", 1, _timed(lambda b: searcher.search(b["image_b64"], b["k"]),
                                                        payloads[:200]), 0, None))

    print(f"machine : {describe()}\nhome    : {home}   tools' logs: {log}")
    print(f"\nflow at scale {args.scale}: {whole:.1f} s ({lineage['rows']['catalog']:,} catalog images, "
          f"{lineage['rows']['queries']:,} queries)")
    for step, seconds in wall.items():
        print(f"  {step:<9} {seconds:7.1f} s   (body {body.get(step, 0.0):6.1f} s)")
    print(f"training (contrastive encoder alone): {lineage['training_seconds']:.1f} s")
    print(f"index: embed {index['embed_seconds']:.2f} s, HNSW build {index['build_seconds']:.3f} s, "
          f"{index['items']:,} items x {index['dim']} dims")
    for name in ("hnsw", "flat", "ivf_pq"):
        v = index[name]
        if "skipped" in v:
            print(f"  {name:<7} {v['skipped']}")
            continue
        print(f"  {name:<7} recall@10 {v['recall@10']:.4f}  {v['bytes_per_vector']:7.1f} B/vector  "
              f"query p50 {v['query_p50_ms']:.3f} ms  p99 {v['query_p99_ms']:.3f} ms")
    print("\nsystem        ndcg@10  mrr@10  map@10  recall@10  simulated_ctr@10")
    for name, m in metrics["systems"].items():
        print(f"  {name:<11} {m['ndcg@10']:.4f}  {m['mrr@10']:.4f}  {m['map@10']:.4f}  {m['recall@10']:.4f}   "
              f"{m['simulated_ctr@10']:.4f}")
    per_level = f"{args.seconds:.0f} s" if args.seconds else f"{args.requests} requests"
    print(f"\nservice: {per_level} per level")
    print_table(rows)
    print(f"\n(measured {time.strftime('%Y-%m-%d %H:%M')})")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
