"""Shadow paging vs nested paging: the same L2 guest under kvm_amd npt=0 and npt=1, inside `labkit nested`.

Run by hand, as root (timings are never asserted in tests; one run takes minutes):

    .venv/bin/python bench/npt.py          # 3 boots per mode
    .venv/bin/python bench/npt.py -n 5

Inside one emulated AMD-V machine (L1), for each mode in turn: reload
``kvm_amd`` with ``npt=1`` (nested paging: the CPU walks the guest's and the
host's tables itself) or ``npt=0`` (shadow paging: KVM keeps shadow tables and
must follow every change the guest makes to its own), then boot the tiny
guest (L2) running a page-table-heavy workload — ``fork``/``exec`` of a
program in a loop, each a fresh address space — timed by the guest's clock.
KVM's own counters (debugfs ``/sys/kernel/debug/kvm/``: ``exits``,
``pf_fixed``, ``mmu_pte_write``, ...) are sampled every 0.1 s while each
boot runs: they sum over the VMs alive, so a read after the guest is gone
says 0; the last sample before its end is the count.  A boot alone
barely separates the modes (platform notes); the workload does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from labkit import images, nested, qemu  # noqa: E402

MARK = "BENCH-NPT "
#: fork+exec of a tiny program, N times: each creates and tears down an address space (page tables).
WORKLOAD = ("read a _ </proc/uptime; i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done; "
            "read b _ </proc/uptime; echo \"LABKIT-NPT $a $b\"")
COUNTERS = ("exits", "pf_fixed", "pf_guest", "mmu_pte_write", "mmu_shadow_zapped", "tlb_flush", "io_exits",
            "halt_exits")
DEBUGFS = Path("/sys/kernel/debug/kvm")


def counters() -> dict[str, int]:
    """KVM's global counters from debugfs (whatever this kernel offers of :data:`COUNTERS`)."""
    found = {}
    for name in COUNTERS:
        try:
            found[name] = int((DEBUGFS / name).read_text())
        except (OSError, ValueError):
            pass
    return found


async def sample(peak: dict[str, int]) -> None:
    """Keep the largest value each counter reached while the guest's VM was alive (until cancelled)."""
    while True:
        for name, value in counters().items():
            peak[name] = max(peak.get(name, 0), value)
        await asyncio.sleep(0.1)


def reload_kvm_amd(npt: int, modules: Path) -> None:
    """``rmmod kvm_amd`` and load it again with ``npt`` (busybox: L1's root has no kmod)."""
    subprocess.run(["busybox", "rmmod", "kvm_amd"], check=False, capture_output=True)
    subprocess.run(["busybox", "insmod", str(modules / "kvm-amd.ko"), "nested=1", f"npt={npt}"], check=True)
    seen = Path("/sys/module/kvm_amd/parameters/npt").read_text().strip()
    if seen != ("Y" if npt else "N"):
        raise RuntimeError(f"kvm_amd npt is {seen}, wanted npt={npt}")


async def inside(n: int, iterations: int, modules: Path) -> None:
    """In L1: for each mode, n boots of the tiny guest with the workload; one JSON line per boot."""
    if not DEBUGFS.is_dir():
        subprocess.run(["mount", "-t", "debugfs", "debugfs", "/sys/kernel/debug"], check=False)
    image = images.tiny_guest(command=WORKLOAD.format(n=iterations), fetch=False, progress=False)
    for npt in (1, 0):
        reload_kvm_amd(npt, modules)
        for _ in range(n):
            peak: dict[str, int] = {}
            sampler = asyncio.create_task(sample(peak))
            try:
                result = await qemu.boot(image, accel="kvm", timeout=600)
            finally:
                sampler.cancel()
            match = re.search(r"LABKIT-NPT ([\d.]+) ([\d.]+)", result.report.command_output or "")
            print(MARK + json.dumps({
                "npt": npt, "userspace_s": result.times.userspace_s,
                "workload_s": float(match.group(2)) - float(match.group(1)) if match else None,
                "counters": peak}), flush=True)


def median(values: list[float]) -> str:
    return f"{statistics.median(values):8.2f}" if values else "       —"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3, help="boots per mode")
    parser.add_argument("--iterations", type=int, default=200, help="fork+exec per boot")
    parser.add_argument("--inside", metavar="MODULES", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        asyncio.run(inside(args.n, args.iterations, Path(args.inside)))
        return 0
    modules = nested.modules.kernel_modules(images.find_kernel(fetch=False))
    buffer = bytearray()
    inner = nested.run_sync([sys.executable, str(Path(__file__).resolve()), "--inside", str(modules), "-n",
                             str(args.n), "--iterations", str(args.iterations)],
                            stdout=buffer.extend, stderr=lambda _data: None, cwd=TOP)
    boots = [json.loads(line[len(MARK):]) for line in buffer.decode().splitlines() if line.startswith(MARK)]
    print(f"{len(boots)} L2 boots, {args.iterations} fork+exec each, inside one L1")
    rows = {npt: [b for b in boots if b["npt"] == npt] for npt in (1, 0)}
    names = sorted({k for b in boots for k in b["counters"]})
    print(f"{'':28}{'npt=1 (nested)':>16}{'npt=0 (shadow)':>16}")
    for label, key in (("launch → userspace, s", "userspace_s"), ("workload by guest clock, s", "workload_s")):
        print(f"{label:28}" + "".join(f"{median([b[key] for b in rows[npt] if b[key] is not None]):>16}"
                                      for npt in (1, 0)))
    for name in names:
        print(f"{name + ' per boot':28}" + "".join(
            f"{median([b['counters'][name] for b in rows[npt] if name in b['counters']]):>16}" for npt in (1, 0)))
    nested_w = [b["workload_s"] for b in rows[1] if b["workload_s"] is not None]
    shadow_w = [b["workload_s"] for b in rows[0] if b["workload_s"] is not None]
    if nested_w and shadow_w:
        ratio = statistics.median(shadow_w) / statistics.median(nested_w)
        print(f"same-run ratio, workload shadow / nested: {ratio:.2f}x")
    if inner.status != 0:
        print(f"(the inner run exited with status {inner.status})")
    return inner.status


if __name__ == "__main__":
    sys.exit(main())
