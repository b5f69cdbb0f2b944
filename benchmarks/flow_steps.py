"""Wall time of each step of a case study's flow set, and of the whole flow set, at several scales.

Each scale runs twice in fresh temporary CASEBOOK_HOMEs against one Prefect server started once, so the
numbers show how cost grows with rows, not process start-up: once as the whole flow (as `casebook run`
does it), once step by step. The steps are the case spec's (video_recommendation has `index`). Usage:
    python benchmarks/flow_steps.py --case ad_click --scales tiny,small [--deploy]
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


def fresh_home(case: str, scale: str) -> None:
    """A new temporary CASEBOOK_HOME whose params.yaml selects ``scale``."""
    home = Path(tempfile.mkdtemp(prefix=f"casebook-bench-{case}-{scale}-"))
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params[case]["scale"] = scale
    params[case]["monitor"]["retrain_on_alarm"] = False
    (home / "params.yaml").write_text(yaml.safe_dump(params))
    os.environ["CASEBOOK_HOME"] = str(home)


def run_scale(case: str, scale: str, deploy: bool) -> tuple[dict[str, float], float, float, int]:
    """Per-step seconds, their sum, the whole flow's seconds and the rows of the largest raw table."""
    import pandas as pd

    from pipelines import cases
    from pipelines.core.flowset import run_case
    from pipelines.core.settings import Paths

    spec = cases.spec(case)
    steps = [s for s in spec.steps if deploy or s not in ("deploy", "monitor")]  # monitor needs a champion
    fresh_home(case, scale)
    t0 = time.perf_counter()
    run_case(spec, steps)
    whole = time.perf_counter() - t0
    fresh_home(case, scale)
    times: dict[str, float] = {}
    for step in steps:
        t0 = time.perf_counter()
        run_case(spec, [step])
        times[step] = time.perf_counter() - t0
    raw = Paths.from_env().raw(case)
    rows = max(sum(len(pd.read_parquet(f)) for f in table.glob("*.parquet")) for table in raw.iterdir())
    return times, sum(times.values()), whole, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="ad_click", help="the case study (see `casebook list`)")
    ap.add_argument("--scales", default="tiny,small", help="comma-separated: tiny,small,large")
    ap.add_argument("--deploy", action="store_true",
                    help="include deploy (Bento build + service smoke test) and monitor (which needs a champion)")
    args = ap.parse_args()
    scales = [s.strip() for s in args.scales.split(",") if s.strip()]
    bad = [s for s in scales if s not in ("tiny", "small", "large")]
    if bad:
        ap.error(f"unknown scale(s) {bad}; choose from tiny, small, large")
    from pipelines.cases import CASES

    if args.case not in CASES:
        ap.error(f"unknown case {args.case!r}; choose from {', '.join(CASES)}")
    apply_privacy_defaults()
    from prefect.testing.utilities import prefect_test_harness

    print(f"machine: {describe()}\ncase: {args.case}")
    with prefect_test_harness(server_startup_timeout=120):
        results = {s: run_scale(args.case, s, args.deploy) for s in scales}
    steps = list(next(iter(results.values()))[0])
    print(f"\n{'step':<10}" + "".join(f"{s:>12}" for s in scales))
    for step in steps:
        print(f"{step:<10}" + "".join(f"{results[s][0][step]:>11.1f}s" for s in scales))
    print(f"{'sum':<10}" + "".join(f"{results[s][1]:>11.1f}s" for s in scales))
    print(f"{'one flow':<10}" + "".join(f"{results[s][2]:>11.1f}s" for s in scales))
    print(f"{'rows':<10}" + "".join(f"{results[s][3]:>12,}" for s in scales))


if __name__ == "__main__":
    main()
