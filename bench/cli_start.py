"""How fast the command line answers: wall time of fresh processes, median of N runs (by hand, never in tests).

    .venv/bin/python bench/cli_start.py          # 10 runs of each
    .venv/bin/python bench/cli_start.py -n 20

Each row is a new interpreter, as a learner's shell starts it: `labkit --help`, `import labkit.host`
(what `labkit host` and the notebooks' first cell import) and, for scale, a bare `python -c pass`.
The `import-time` column is what `-X importtime` says the slowest labkit import took (µs), in one extra run.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent

CASES: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "labkit --help": [str(VENV_BIN / "labkit"), "--help"],
    "import labkit.host": [sys.executable, "-c", "import labkit.host"],
    "import labkit.cli.host": [sys.executable, "-c", "import labkit.cli.host"],
}


def wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def slowest_import(argv: list[str]) -> str:
    """The labkit module whose import (with what it imported) took longest, from ``-X importtime``."""
    if argv[0] != sys.executable:
        return ""
    err = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], capture_output=True, text=True).stderr
    rows = [(int(m.group(1)), m.group(2).strip()) for m in re.finditer(r"\|\s*(\d+) \|(.*)$", err, re.M)]
    labkit_rows = [r for r in rows if r[1].lstrip().startswith("labkit")]
    if not labkit_rows:
        return ""
    us, name = max(labkit_rows)
    return f"{name} {us} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10, help="runs per case (default 10)")
    n = parser.parse_args().n
    times: dict[str, list[float]] = {case: [] for case in CASES}
    for _ in range(n):  # interleaved, so a burst of load hits every case alike
        for case, argv in CASES.items():
            times[case].append(wall(argv))
    base = statistics.median(times["python -c pass"])
    print(f"{'case':24} {'median s':>9} {'min':>6} {'max':>6} {'- python':>9}  slowest labkit import")
    for case, argv in CASES.items():
        t = times[case]
        print(f"{case:24} {statistics.median(t):9.3f} {min(t):6.3f} {max(t):6.3f} "
              f"{statistics.median(t) - base:9.3f}  {slowest_import(argv)}")


if __name__ == "__main__":
    main()
