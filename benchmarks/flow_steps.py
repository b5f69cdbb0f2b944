"""The time budget of every case study's flow set: wall time and rows/s per step, per case, per scale.

Each (case, scale) runs once as one flow in a fresh temporary CASEBOOK_HOME, against one Prefect server
started once (as `casebook run all` does in one process), so the numbers show the work, not process
start-up. For each step it prints the wall time of its task, the seconds of the step body itself and
the rows/s over the largest raw table; per case the flow's wall time and the orchestration overhead
(flow wall time minus the sum of the step bodies: Prefect's task runs, cache lookups, manifests);
and the total over the cases, which is what `casebook run all` costs after start-up. Usage:

    python benchmarks/flow_steps.py                       # every registered case, default scale
    python benchmarks/flow_steps.py --case ad_click --scales tiny,small,large [--no-deploy]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe

from pipelines.core.settings import PROJECT_ROOT, apply_privacy_defaults

BUDGET_S = 30.0
"""Per case at the default scale: ten cases in five minutes."""


def fresh_home(scale: str) -> Path:
    """A new temporary CASEBOOK_HOME whose params.yaml selects ``scale`` for every case."""
    home = Path(tempfile.mkdtemp(prefix=f"casebook-bench-{scale}-"))
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    for section in params.values():
        section["scale"] = scale
        section["monitor"]["retrain_on_alarm"] = False  # a retrain would be timed as monitoring
    (home / "params.yaml").write_text(yaml.safe_dump(params))
    os.environ["CASEBOOK_HOME"] = str(home)
    return home


def run_case(case: str, deploy: bool) -> tuple[dict[str, float], dict[str, float], float, int]:
    """(task seconds per step, body seconds per step, flow seconds, rows of the largest raw table)."""
    import pandas as pd

    from pipelines import cases
    from pipelines.core import flowset
    from pipelines.core.settings import Paths

    spec = cases.spec(case)
    steps = [s for s in spec.steps if deploy or s not in ("deploy", "monitor")]
    wall: dict[str, float] = {}
    flowset.TRACKER.seconds.clear()
    t0 = time.perf_counter()
    flowset.run_case(spec, steps, progress=lambda s, state, secs: wall.__setitem__(s, secs) if state != "running"
                     else None)
    whole = time.perf_counter() - t0
    body: dict[str, float] = {}
    for step, secs in flowset.TRACKER.seconds:
        body[step] = body.get(step, 0.0) + secs
    raw = Paths.from_env().raw(case)
    rows = max(sum(len(pd.read_parquet(f)) for f in table.glob("*.parquet")) for table in raw.iterdir())
    return wall, body, whole, rows


def timed_flow(case: str, scale: str) -> None:
    """The case's whole flow set (through deploy and monitor) in a fresh home at ``scale``, per step printed.

    What a service benchmark runs first, so a champion of a known world serves what it measures.
    """
    from pipelines.core.console import route_logs

    log = route_logs(verbose=False)  # before Prefect starts: the tools' logs go to a file, not between rows
    from prefect.testing.utilities import prefect_test_harness

    home = fresh_home(scale)
    print(f"scale: {scale}  home: {home}  tools' logs: {log}")
    with prefect_test_harness(server_startup_timeout=120):
        wall, body, whole, rows = run_case(case, deploy=True)
    print(f"\nflow {whole:.1f} s; {rows:,} rows in the largest raw table")
    for step, secs in wall.items():
        print(f"  {step:<11}{secs:>8.1f} s (body {body.get(step, 0.0):.1f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="all", help="a case study (see `casebook list`), or all")
    ap.add_argument("--scales", default="small", help="comma-separated: tiny,small,large")
    ap.add_argument("--no-deploy", action="store_true", help="leave out deploy and monitor")
    args = ap.parse_args()
    from pipelines.cases import CASES

    scales = [s.strip() for s in args.scales.split(",") if s.strip()]
    if bad := [s for s in scales if s not in ("tiny", "small", "large")]:
        ap.error(f"unknown scale(s) {bad}; choose from tiny, small, large")
    names = list(CASES) if args.case == "all" else [args.case]
    if args.case != "all" and args.case not in CASES:
        ap.error(f"unknown case {args.case!r}; choose from {', '.join(CASES)} or all")
    apply_privacy_defaults()
    from pipelines.core.console import route_logs

    log = route_logs(verbose=False)  # before Prefect starts: the tools' logs go to a file, not between rows
    from prefect.testing.utilities import prefect_test_harness

    print(f"machine: {describe()}\ntools' logs: {log}")
    with prefect_test_harness(server_startup_timeout=120):
        for scale in scales:
            home = fresh_home(scale)
            total = 0.0
            print(f"\n== scale {scale} (home {home})")
            for case in names:
                wall, body, whole, rows = run_case(case, deploy=not args.no_deploy)
                total += whole
                overhead = whole - sum(body.values())
                print(f"\n{case}: {rows:,} rows in the largest raw table")
                print(f"  {'step':<10}{'task s':>9}{'body s':>9}{'rows/s':>12}")
                for step, secs in wall.items():
                    print(f"  {step:<10}{secs:>9.1f}{body.get(step, 0.0):>9.1f}{rows / max(secs, 1e-9):>12,.0f}")
                within = "within" if whole <= BUDGET_S else "OVER"
                print(f"  flow {whole:.1f} s ({within} the {BUDGET_S:.0f} s budget at the default scale); "
                      f"orchestration overhead {overhead:.1f} s ({overhead / whole:.0%})")
            print(f"\ntotal of the flow sets at {scale} ({', '.join(names)}): {total:.1f} s")


if __name__ == "__main__":
    main()
