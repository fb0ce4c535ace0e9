"""Boot the tiny guest N times per variant; print median/min/max of each boot phase.

Run by hand (timings are never asserted in tests):

    .venv/bin/python bench/boot.py              # 10 boots per variant
    .venv/bin/python bench/boot.py -n 20 --variants labkit pc-bzimage

Where launch → userspace goes, per variant (median (min–max) seconds):
  userspace    launch → the guest's /init report arrived (the figure compared)
  qemu-start   launch → vCPUs started: QEMU initialised, kernel + initramfs loaded
  early        the guest's earliest work its own clock misses (firmware, decompression on pc;
               on microvm the kernel patching its code with interrupts off, APIC timer calibration)
  kernel       the guest's clock at /init: kernel init, initcalls, unpacking the initramfs
  init         /init's own work until its report, by the guest's clock
  exit         launch → QEMU exited after the guest powered off
  cpu          QEMU's CPU time per boot (load inflates it far less than wall time)
  rss          QEMU's peak resident memory, MiB
With --initcalls N, one more boot per variant runs with initcall_debug and
prints its N slowest initcalls (that boot is not in the medians).

Variants (all TCG unless KVM can boot Linux here, where each also runs under KVM):
  stock        -M pc, bzImage through SeaBIOS, only "console=ttyS0 quiet panic=-1"
  pc-bzimage   -M pc, bzImage, labkit's kernel command line (+ tsc_early_khz)
  pc-vmlinux   -M pc, the uncompressed kernel entered at its PVH note
  before-17    labkit before issue 17: -M microvm with ACPI, vmlinux, without noreplace-smp
  microvm-acpi -M microvm with its ACPI tables, vmlinux, labkit's command line
  labkit       what labkit.qemu.boot() picks on this host (here: microvm without ACPI + vmlinux, 1 vCPU)
Then the bare-metal payload under KVM (where /dev/kvm works) and TCG.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import host, images, qemu  # noqa: E402
from labkit.errors import LabkitError  # noqa: E402
from labkit.lessons import payload

STOCK_CMDLINE = "console=ttyS0 quiet panic=-1"
VARIANTS: dict[str, dict[str, Any]] = {
    "stock": dict(machine="pc", vmlinux=False, cmdline=STOCK_CMDLINE),
    "pc-bzimage": dict(machine="pc", vmlinux=False),
    "pc-vmlinux": dict(machine="pc", vmlinux=True),
    "before-17": dict(machine="microvm", vmlinux=True, cmdline=images.BASE_CMDLINE.replace(" noreplace-smp", "")),
    "microvm-acpi": dict(machine="microvm", vmlinux=True),
    "labkit": dict(machine="auto", vmlinux=True),
}
#: Column → the :class:`labkit.qemu.BootSummary` field it shows.
COLUMNS = {"userspace": "userspace_s", "qemu-start": "qemu_start_s", "early": "early_kernel_s",
           "kernel": "guest_uptime_s", "init": "init_s", "exit": "poweroff_s", "cpu": "qemu_cpu_s",
           "rss": "peak_rss_mib"}


def summary(spread: qemu.Spread | None, column: str) -> str:
    if spread is None:
        return f"{'—':<17}"
    if column == "rss":
        return f"{spread.median:5.0f} ({spread.min:3.0f}–{spread.max:3.0f})"
    return f"{spread.median:5.3f} ({spread.min:4.2f}–{spread.max:4.2f})"


INITCALL = re.compile(r"initcall (\S+?)(?:\+0x\w+/0x\w+)? returned -?\d+ after (\d+) usecs")


def slowest_initcalls(dmesg: str, n: int) -> list[tuple[str, float]]:
    """The ``n`` slowest initcalls an ``initcall_debug`` kernel logged: (name, milliseconds)."""
    calls = [(m.group(1), int(m.group(2)) / 1000) for m in INITCALL.finditer(dmesg)]
    return sorted(calls, key=lambda c: -c[1])[:n]


async def boot_once(name: str, image: images.GuestImage, accel: qemu.Accel, timeout: float,
                    **options: Any) -> qemu.BootResult:
    spec = VARIANTS[name]
    variant = dataclasses.replace(image, vmlinux=image.vmlinux if spec["vmlinux"] else None,
                                  cmdline=spec.get("cmdline", image.cmdline))
    return await qemu.boot(variant, accel=accel, machine=spec["machine"], timeout=timeout,
                           host_tuning=name != "stock", **options)


async def bench(variants: list[tuple[str, qemu.Accel]], image: images.GuestImage, n: int, timeout: float,
                vcpus: int) -> dict:
    """Round-robin over the variants, so a busy moment on a shared host hits them all alike."""
    results: dict[tuple[str, qemu.Accel], list[qemu.BootResult]] = {v: [] for v in variants}
    failures: dict[tuple[str, qemu.Accel], list[str]] = {v: [] for v in variants}
    for _ in range(n):
        for name, accel in variants:
            try:
                results[name, accel].append(await boot_once(name, image, accel, timeout, vcpus=vcpus))
            except LabkitError as exc:
                failures[name, accel].append(str(exc).splitlines()[0])
    rows = {}
    for (name, accel), got in results.items():
        summed = qemu.summarize_boots(got).get(accel)
        columns = {c: getattr(summed, field, None) for c, field in COLUMNS.items()}
        machine = got[-1].config.machine if got else "?"
        print(f"{name:<11} {accel:<4} {machine:<8} " + " ".join(summary(columns[c], c) for c in COLUMNS)
              + f"  {len(failures[name, accel])}/{n} failed")
        for failure in failures[name, accel]:
            print(f"    failed: {failure}")
        rows[name, accel] = columns
    return rows


async def initcalls(variants: list[tuple[str, qemu.Accel]], image: images.GuestImage, count: int,
                    timeout: float, vcpus: int) -> None:
    """One boot per variant with ``initcall_debug``: its slowest initcalls, read from the guest's dmesg."""
    for name, accel in variants:
        result = await boot_once(name, image, accel, timeout, command="dmesg", append="initcall_debug",
                                vcpus=vcpus)
        calls = slowest_initcalls(result.report.command_output or "", count)
        total = sum(ms for _, ms in slowest_initcalls(result.report.command_output or "", 10_000))
        print(f"{name} {accel}: all initcalls {total:.0f} ms by the guest's clock; slowest: "
              + ", ".join(f"{call} {ms:.0f}" for call, ms in calls))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="boots per variant (default 10)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--vcpus", type=int, default=1, help="vCPUs of every variant's guest (default 1)")
    parser.add_argument("--payload-iterations", type=int, default=50_000_000)
    parser.add_argument("--initcalls", type=int, default=0, metavar="N",
                        help="also print the N slowest initcalls of each variant (one initcall_debug boot)")
    parser.add_argument("--no-payload", action="store_true", help="skip the bare-metal payload runs")
    args = parser.parse_args()

    image = images.tiny_guest(progress=False)
    linux_accel = qemu.choose_accel("auto", "linux")
    accels: list[qemu.Accel] = ["tcg", "kvm"] if linux_accel.name == "kvm" else ["tcg"]
    print(f"guest: Linux {image.kernel_release}, {args.vcpus} vCPU; {args.n} boots per variant; "
          f"host TSC: {host.tsc_frequency()}")
    print(f"KVM for Linux: {'yes' if linux_accel.name == 'kvm' else 'no'} — {linux_accel.reason}\n")
    print(f"{'variant':<11} {'accel':<4} {'machine':<8} " + " ".join(f"{c:<17}" for c in COLUMNS))
    print("                          (median (min–max); seconds, rss in MiB)")
    variants = [(name, accel) for accel in accels for name in args.variants]
    rows = await bench(variants, image, args.n, args.timeout, args.vcpus)
    base, best = rows.get(("stock", "tcg")), rows.get(("labkit", "tcg"))
    for column, what in (("userspace", "launch → userspace"), ("cpu", "QEMU CPU time")):
        if base and best and base[column] and best[column]:
            print(f"\n{what}, TCG: labkit {best[column].median:.3f} s vs stock {base[column].median:.3f} s "
                  f"(stock/labkit {base[column].median / best[column].median:.2f}×, same run)", end="")
    print()
    if args.initcalls:
        print("\nslowest initcalls (ms, one initcall_debug boot per variant; the clock is coarse before "
              "the TSC clocksource):")
        await initcalls(variants, image, args.initcalls, args.timeout, args.vcpus)
    if args.no_payload:
        return

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
