"""Feast online-store load, side by side: Feast's own ``materialize`` against the columnar path.

A case's ingest, validate and features steps run once in a fresh temporary CASEBOOK_HOME (the features
step loads the store; that load is not timed here). Then every view of the case's FeatureService is
emptied and loaded again, once by each path, on the same rows and the same window; both loads are
compared row for row (entity key, feature, value bytes, text, timestamps) before any number is
printed, so a fast path that writes something else cannot look fast. Usage:

    python benchmarks/materialize.py                      # ad_click at the default scale
    python benchmarks/materialize.py --case ad_click --scale large
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe
from flow_steps import fresh_home

from pipelines.core.settings import apply_privacy_defaults


def _take(db: Path, table: str) -> list[tuple[Any, ...]]:
    """Every stored row of a view's table, then empty it."""
    with sqlite3.connect(db) as c:
        rows = sorted(c.execute(f"SELECT entity_key, feature_name, value, value_text, event_ts, created_ts "
                                f"FROM {table}").fetchall())
        c.execute(f"DELETE FROM {table}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="ad_click", help="a case study with features (see `casebook list`)")
    ap.add_argument("--scale", default="small", choices=["tiny", "small", "large"])
    args = ap.parse_args(argv)
    from pipelines import cases

    if args.case not in cases.CASES or cases.spec(args.case).features is None:
        with_features = [n for n in cases.CASES if cases.spec(n).features is not None]
        ap.error(f"unknown case or a case without features: {args.case!r}; choose from {', '.join(with_features)}")
    apply_privacy_defaults()
    from pipelines.core.console import route_logs

    log = route_logs(verbose=False)
    from prefect.testing.utilities import prefect_test_harness

    from pipelines.core import feast, flowset
    from pipelines.core import materialize as fast
    from pipelines.core.settings import Paths

    home = fresh_home(args.scale)
    with prefect_test_harness(server_startup_timeout=120):
        out = flowset.run_case(cases.spec(args.case), ["ingest", "validate", "features"])
    window = out["features"]["online"]
    start, end = (datetime.fromisoformat(window[k]).astimezone(UTC) for k in ("from", "until"))
    paths = Paths(home)
    fs = feast.store(paths)
    service = cases.spec(args.case).features.service
    db = paths.feast / "online.db"
    rows: dict[str, dict[str, Any]] = {}
    for view in feast.service_views(fs, service):
        table = f'"{fs.project}_{view}"'
        _take(db, table)
        t0 = time.perf_counter()
        fs.materialize(start_date=start, end_date=end, feature_views=[view])
        slow_s = time.perf_counter() - t0
        slow = _take(db, table)
        t0 = time.perf_counter()
        entities = fast.write_view(fs, view, start, end)
        fast_s = time.perf_counter() - t0
        if _take(db, table) != slow:
            print(f"{view}: the columnar load differs from Feast's; no timing is printed")
            return 1
        rows[view] = {"entities": entities, "values": len(slow), "feast": slow_s, "columnar": fast_s}
    feast.materialize(fs, service, start, end)  # leave the home's store loaded

    print(f"machine: {describe()}\nhome {home}   tools' logs: {log}")
    print(f"\n{args.case} at {args.scale}: window {start:%Y-%m-%d} .. {end:%Y-%m-%d}; "
          "both loads identical, row for row")
    head = f"{'view':<28}{'entities':>10}{'values':>10}{'feast s':>9}{'columnar s':>11}{'feast val/s':>13}" \
           f"{'columnar val/s':>16}{'speed-up':>10}"
    print(head + "\n" + "-" * len(head))
    total = {"entities": 0, "values": 0, "feast": 0.0, "columnar": 0.0}
    for view, r in [*rows.items(), ("all views", total)]:
        if view != "all views":
            for k in total:
                total[k] += r[k]
        print(f"{view:<28}{r['entities']:>10,}{r['values']:>10,}{r['feast']:>9.2f}{r['columnar']:>11.2f}"
              f"{r['values'] / r['feast']:>13,.0f}{r['values'] / r['columnar']:>16,.0f}"
              f"{r['feast'] / r['columnar']:>9.1f}x")
    print(f"\n(measured {time.strftime('%Y-%m-%d %H:%M')}; each load includes the offline store's "
          "latest-row-per-entity read, which both paths do the same way)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
