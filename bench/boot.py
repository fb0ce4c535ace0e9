"""Boot the tiny guest N times per variant; print median/min/max of each boot phase.

Run by hand (timings are never asserted in tests):

    .venv/bin/python bench/boot.py              # 10 boots per variant
    .venv/bin/python bench/boot.py -n 20 --variants labkit pc-bzimage

Phases, in seconds since QEMU was launched: first console byte, guest
userspace (/init's report arrived), power-off (QEMU exited); plus the
guest's own clock at /init (kernel start → userspace) and the part of the
boot that clock missed (QEMU start, firmware, loading, decompression).

Variants (all TCG unless KVM can boot Linux here, where each also runs under KVM):
  stock        -M pc, bzImage through SeaBIOS, only "console=ttyS0 quiet panic=-1"
  pc-bzimage   -M pc, bzImage, labkit's kernel command line (+ tsc_early_khz)
  pc-vmlinux   -M pc, the uncompressed kernel entered at its PVH note
  labkit       what labkit.qemu.boot() picks on this host (microvm + vmlinux here)
Then the bare-metal payload under KVM (where /dev/kvm works) and TCG.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import host, images, payload, qemu  # noqa: E402
from labkit.errors import LabkitError  # noqa: E402

STOCK_CMDLINE = "console=ttyS0 quiet panic=-1"
VARIANTS: dict[str, dict[str, Any]] = {
    "stock": dict(machine="pc", vmlinux=False, cmdline=STOCK_CMDLINE),
    "pc-bzimage": dict(machine="pc", vmlinux=False),
    "pc-vmlinux": dict(machine="pc", vmlinux=True),
    "labkit": dict(machine="auto", vmlinux=True),
}
PHASES = ("first_output_s", "userspace_s", "poweroff_s", "guest_uptime_s", "before_kernel_s")


def summary(spread: qemu.Spread | None) -> str:
    if spread is None:
        return "   —                  "
    return f"{spread.median:5.2f} ({spread.min:4.2f}–{spread.max:4.2f})"


async def boot_once(name: str, image: images.GuestImage, accel: qemu.Accel, timeout: float) -> qemu.BootResult:
    spec = VARIANTS[name]
    variant = dataclasses.replace(image, vmlinux=image.vmlinux if spec["vmlinux"] else None,
                                  cmdline=spec.get("cmdline", image.cmdline))
    return await qemu.boot(variant, accel=accel, machine=spec["machine"], timeout=timeout,
                           host_tuning=name != "stock")


async def bench(variants: list[tuple[str, qemu.Accel]], image: images.GuestImage, n: int, timeout: float) -> dict:
    """Round-robin over the variants, so a busy moment on a shared host hits them all alike."""
    results: dict[tuple[str, qemu.Accel], list[qemu.BootResult]] = {v: [] for v in variants}
    failures: dict[tuple[str, qemu.Accel], list[str]] = {v: [] for v in variants}
    for _ in range(n):
        for name, accel in variants:
            try:
                results[name, accel].append(await boot_once(name, image, accel, timeout))
            except LabkitError as exc:
                failures[name, accel].append(str(exc).splitlines()[0])
    rows = {}
    for (name, accel), got in results.items():
        summed = qemu.summarize_boots(got).get(accel)
        machine = got[-1].config.machine if got else "?"
        print(f"{name:<11} {accel:<4} {machine:<8} "
              + "  ".join(summary(getattr(summed, p, None)) for p in PHASES)
              + f"  {len(failures[name, accel])}/{n} failed")
        for failure in failures[name, accel]:
            print(f"    failed: {failure}")
        rows[name, accel] = summed
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="boots per variant (default 10)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--payload-iterations", type=int, default=50_000_000)
    args = parser.parse_args()

    image = images.tiny_guest(progress=False)
    linux_accel = qemu.choose_accel("auto", "linux")
    accels: list[qemu.Accel] = ["tcg", "kvm"] if linux_accel.name == "kvm" else ["tcg"]
    print(f"guest: Linux {image.kernel_release}; {args.n} boots per variant; host TSC: {host.tsc_frequency()}")
    print(f"KVM for Linux: {'yes' if linux_accel.name == 'kvm' else 'no'} — {linux_accel.reason}\n")
    print(f"{'variant':<11} {'accel':<4} {'machine':<8} " + "  ".join(f"{p:<22}" for p in PHASES))
    print("                           (median (min–max) seconds)")
    rows = await bench([(name, accel) for accel in accels for name in args.variants], image, args.n, args.timeout)
    base = rows.get(("stock", "tcg"))
    best = rows.get(("labkit", "tcg"))
    if base and best and base.userspace_s and best.userspace_s:
        print(f"\nlaunch → userspace, TCG: labkit {best.userspace_s.median:.2f} s vs stock "
              f"{base.userspace_s.median:.2f} s (ratio {base.userspace_s.median / best.userspace_s.median:.2f}×)")

    print("\nbare-metal payload (-bios, no firmware, no kernel), median of 3:")
    for ring, iterations in ((3, args.payload_iterations), (0, 200_000)):
        kvm_runs_payloads = qemu.choose_accel("auto", "payload").name == "kvm"
        payload_accels: list[qemu.Accel] = ["kvm", "tcg"] if kvm_runs_payloads else ["tcg"]
        for accel in payload_accels:
            runs = [await payload.run(accel, iterations, ring) for _ in range(3)]
            loop = statistics.median(r.loop_s for r in runs if r.loop_s is not None)
            first = statistics.median(r.first_output_s for r in runs if r.first_output_s is not None)
            total = statistics.median(r.total_s for r in runs)
            print(f"  ring {ring} {accel}: {iterations:>11,} iterations in {loop:8.4f} s "
                  f"({iterations / loop / 1e6:8.1f} M/s); launch → first byte {first:.3f} s, "
                  f"→ exit {total:.3f} s; all finished: {all(r.finished for r in runs)}")


if __name__ == "__main__":
    start = time.monotonic()
    asyncio.run(main())
    print(f"\n(bench took {time.monotonic() - start:.0f} s)")
