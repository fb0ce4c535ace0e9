"""labkit's own VMM vs QEMU microvm, booting the same kernel and initramfs under KVM, in the same L1.

Run by hand (timings are never asserted in tests); it boots the emulated AMD-V machine once:

    .venv/bin/python bench/own_vmm.py          # 5 boots per VMM, round-robin
    .venv/bin/python bench/own_vmm.py -n 9

Both VMMs boot the lab's tiny guest (the cached vmlinux through its 64-bit or PVH entry, the busybox
initramfs with a fresh nonce) on one vCPU with 128 MiB, on kvm_amd inside L1.  Prints the medians
(min–max) of launch → the guest's /init report (labkit: from the call of ``vmm.boot``; QEMU: from its
process's launch) and the same-run ratio labkit / QEMU (issue 26's goal: ≤ 0.5), and labkit's exits
per boot by reason.
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

from labkit import nested, qemu, vmm  # noqa: E402

MARK = "BENCH-OWN-VMM "


def spread(values: list[float]) -> str:
    """Median (min–max, n) in seconds."""
    got = qemu.Spread.of(values)
    return "—" if got is None else f"{got.median:6.2f} s ({got.min:.2f}–{got.max:.2f}, n={len(values)})"


def inside(n: int) -> None:
    """In L1: n boots per VMM, alternating so a busy moment favours neither; one JSON line per boot."""
    vmm.require_kvm_for_linux()
    for _ in range(n):
        own = vmm.boot(timeout=180, check_host=False)
        print(MARK + json.dumps({"vmm": "labkit", "userspace_s": own.times.userspace_s,
                                 "report_after_first_run_s": own.times.report_after_first_run_s,
                                 "setup_s": own.times.setup_s, "guest_uptime_s": own.times.guest_uptime_s,
                                 "exits": own.exits}), flush=True)
        other = asyncio.run(qemu.boot(accel="kvm", timeout=180))
        print(MARK + json.dumps({"vmm": "qemu", "machine": other.config.machine,
                                 "userspace_s": other.times.userspace_s,
                                 "guest_uptime_s": other.times.guest_uptime_s}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="boots per VMM (≥ 5 for a median)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args.n)
        return 0
    buffer = bytearray()
    result = nested.run_sync([sys.executable, str(Path(__file__).resolve()), "--inside", "-n", str(args.n)],
                             stdout=buffer.extend, stderr=lambda _: None, cwd=TOP, vcpus=1)
    boots = [json.loads(line[len(MARK):]) for line in buffer.decode().splitlines() if line.startswith(MARK)]
    if result.status != 0 or not boots:
        print(f"the run inside L1 failed (status {result.status}):\n{buffer.decode()[-3000:]}", file=sys.stderr)
        return 1
    own = [b for b in boots if b["vmm"] == "labkit"]
    qemus = [b for b in boots if b["vmm"] == "qemu"]
    theirs = [b["userspace_s"] for b in qemus]
    mine = [b["userspace_s"] for b in own]
    machine = qemus[0]["machine"]
    print(f"labkit VMM  launch → report           {spread(mine)}")
    print(f"            first KVM_RUN → report    {spread([b['report_after_first_run_s'] for b in own])}")
    print(f"            setup (files, VM)         {spread([b['setup_s'] for b in own])}")
    print(f"            guest clock at /init      {spread([b['guest_uptime_s'] for b in own])}")
    print(f"QEMU {machine:<17} launch → report    {spread(theirs)}")
    print(f"            guest clock at /init      {spread([b['guest_uptime_s'] for b in qemus])}")
    pairs = [a / b for a, b in zip(mine, theirs)]
    print(f"same-run ratio labkit / QEMU          {statistics.median(pairs):.2f} "
          f"({min(pairs):.2f}–{max(pairs):.2f})   goal ≤ 0.5")
    reasons = sorted({r for b in own for r in b["exits"]})
    print("labkit exits per boot (median):  " + ", ".join(
        f"{r} {statistics.median(b['exits'].get(r, 0) for b in own):g}" for r in reasons))
    return 0


if __name__ == "__main__":
    sys.exit(main())
