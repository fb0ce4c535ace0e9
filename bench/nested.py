"""The emulated AMD-V machine, timed: L1 ready, and the tiny guest (L2) under nested KVM vs TCG inside L1.

Run by hand (timings are never asserted in tests):

    .venv/bin/python bench/nested.py          # 5 L1 boots, 5 L2 boots per accelerator
    .venv/bin/python bench/nested.py -n 9

Prints medians (min–max) of:
  L1 ready      launch of L1's QEMU → /nested-init about to run the command (kernel, modules, virtiofs, overlay)
  L1 total      launch → QEMU gone, for `true` as the command
  L2 userspace  launch of the tiny guest's QEMU inside L1 → its /init report, under KVM (on the emulated
                SVM) and under TCG (an emulator inside an emulator), round-robin in one L1 boot;
                and the same guest on this host (what `labkit boot` picks here), for scale
and the same-run ratio L2 TCG / L2 KVM.  Targets (issue 10): L1 ready ≤ 4 s, L2 under KVM ≤ 6 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from labkit import nested, qemu  # noqa: E402

MARK = "BENCH-NESTED "


def summary(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values):6.2f} s ({min(values):.2f}–{max(values):.2f}, n={len(values)})"


async def inside(n: int) -> None:
    """In L1: boot the tiny guest n times per accelerator, round-robin; one JSON line per boot."""
    for _ in range(n):
        for accel in ("kvm", "tcg"):
            result = await qemu.boot(accel=accel, timeout=180)
            print(MARK + json.dumps({"accel": result.accel.name, "userspace_s": result.times.userspace_s}),
                  flush=True)


def quiet(_data: bytes) -> None:
    """The L1 command's output is not this benchmark's."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="boots per measurement (≥ 5 for a median)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        asyncio.run(inside(args.n))
        return 0
    ready, total, host_boot = [], [], []
    for _ in range(args.n):
        result = nested.run_sync(["true"], stdout=quiet, stderr=quiet)
        ready.append(result.ready_s)
        total.append(result.total_s)
        host_boot.append(asyncio.run(qemu.boot(timeout=120)).times.userspace_s)
    buffer = bytearray()

    def collect(data: bytes) -> None:
        buffer.extend(data)

    inner = nested.run_sync([sys.executable, str(Path(__file__).resolve()), "--inside", "-n", str(args.n)],
                            stdout=collect, stderr=quiet, cwd=TOP)
    lines = [l for l in buffer.decode().splitlines() if l.startswith(MARK)]
    boots = [json.loads(l[len(MARK):]) for l in lines]
    l2 = {accel: [b["userspace_s"] for b in boots if b["accel"] == accel] for accel in ("kvm", "tcg")}
    print(f"L1 ready (launch → command starts)      {summary(ready)}   target ≤ 4 s")
    print(f"L1 total for `true`                     {summary(total)}")
    print(f"L2 userspace under KVM on emulated SVM  {summary(l2['kvm'])}   target ≤ 6 s")
    print(f"L2 userspace under TCG inside L1        {summary(l2['tcg'])}")
    print(f"tiny guest on this host (labkit boot)   {summary(host_boot)}")
    if l2["kvm"] and l2["tcg"]:
        ratio = statistics.median(l2["tcg"]) / statistics.median(l2["kvm"])
        print(f"same-run ratio L2 TCG / L2 KVM          {ratio:6.2f}×")
    if inner.status != 0:
        print(f"(the inner run exited with status {inner.status})")
    return inner.status


if __name__ == "__main__":
    sys.exit(main())
