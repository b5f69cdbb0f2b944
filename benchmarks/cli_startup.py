"""How long ``casebook --help`` takes, cold process each time (target: under 1.5 s)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe


def main(runs: int = 7) -> None:
    exe = shutil.which("casebook") or str(Path(sys.executable).parent / "casebook")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([exe, "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    print(f"machine: {describe()}")
    print(f"casebook --help over {runs} runs: median {statistics.median(times):.2f}s, max {max(times):.2f}s")


if __name__ == "__main__":
    main()
