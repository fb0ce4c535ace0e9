"""Exit round trips per second: labkit's Python run loop against the same loop in C.

The guest is ``out_loop.S`` (16-bit real mode): N times ``out`` to the serial
port, then ``hlt`` — nothing but VM exits.  The C program (``kvm_exits.c``,
compiled here with gcc -O2) makes the same ioctls and does the same work per
exit (append the byte to a buffer).  Runs alternate C and Python in one
process tree, so both see the same host load; only the KVM_RUN loop is timed
in each.

    .venv/bin/python bench/kvm_exits.py [--exits 200000] [--repeats 5]

Prints exits/s for each run, the medians and the Python/C ratio (target ≥ 0.80).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from labkit import runtime
from labkit.kvm import guests
from labkit.kvm.machine import Machine

HERE = Path(__file__).resolve().parent
TARGET = 0.80


def build_c(workdir: Path) -> Path:
    exe = workdir / "kvm_exits"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(HERE / "kvm_exits.c")], check=True)
    return exe


def run_c(exe: Path, image: Path, origin: int, entry: int, exits: int) -> float:
    out = subprocess.run([str(exe), str(image), hex(origin), hex(entry), str(exits)],
                         check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]) / float(out[1])


def run_python(exits: int) -> float:
    with Machine("out_loop") as machine:
        machine.vcpu.set_regs(rcx=exits)
        result = machine.run(max_exits=exits + 10, timeout=600)
    assert result.stopped_by == "KVM_EXIT_HLT" and len(result.serial) == exits
    return result.total_exits / result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exits", type=int, default=200_000, help="exits per run [200000]")
    parser.add_argument("--repeats", type=int, default=5, help="C/Python pairs [5]")
    args = parser.parse_args()

    program = guests.guest("out_loop").build()
    workdir = runtime.scratch_dir("bench-kvm-exits")
    try:
        image = workdir / "out_loop.bin"
        image.write_bytes(program.image)
        exe = build_c(workdir)
        c_rates, py_rates = [], []
        print(f"{args.exits:,} exits per run, {args.repeats} C/Python pairs, alternating")
        for i in range(args.repeats):
            order = ("C", "Python") if i % 2 == 0 else ("Python", "C")
            for who in order:
                if who == "C":
                    c_rates.append(run_c(exe, image, program.origin, program.symbol("start"), args.exits))
                else:
                    py_rates.append(run_python(args.exits))
            print(f"  pair {i + 1}: C {c_rates[-1]:>9,.0f} exits/s   Python {py_rates[-1]:>9,.0f} exits/s   "
                  f"Python/C {py_rates[-1] / c_rates[-1]:.3f}")
            time.sleep(0.1)
        c, py = statistics.median(c_rates), statistics.median(py_rates)
        pairs = statistics.median(p / q for p, q in zip(py_rates, c_rates))
        print(f"median: C {c:,.0f} exits/s ({1e6 / c:.2f} µs/exit), Python {py:,.0f} exits/s ({1e6 / py:.2f} µs/exit)")
        print(f"Python/C: {py / c:.3f} (ratio of medians), {pairs:.3f} (median of pair ratios); "
              f"target ≥ {TARGET:.2f}: {'met' if min(py / c, pairs) >= TARGET else 'NOT met'}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
