"""What does libvirt cost on top of QEMU?  The tiny guest booted both ways, alternately.

Run by hand (never in the test suite), as root or as a normal user:

    .venv/bin/python bench/virt_boot.py [--runs 5] [--memory 256] [--vcpus 1]

libvirt: define → start returned → report line on the console (seconds since
the Domain object was created).  QEMU: labkit.qemu.boot() with the same kernel,
initramfs, machine type (pc) and accelerator, launch → report.  Runs alternate
so a noisy neighbour hurts both alike; compare the medians and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from labkit import images, qemu, virt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--memory", type=int, default=256, help="MiB")
    parser.add_argument("--vcpus", type=int, default=1)
    args = parser.parse_args()

    image = images.tiny_guest()
    libvirt_rows: list[dict[str, float]] = []
    qemu_boots: list[qemu.BootResult] = []
    with virt.connect() as conn:
        dtype = conn.domain_type()
        accel: qemu.Accel = "kvm" if dtype.type == "kvm" else "tcg"
        print(f"{conn.uri}, domain type {dtype.type}; raw QEMU with -accel {accel} -machine pc")
        for i in range(args.runs):
            spec = virt.DomainSpec.for_image(f"bench-{i}", image, memory_mib=args.memory, vcpus=args.vcpus,
                                             domain_type=dtype.type)
            with conn.define(spec) as dom:
                dom.start()
                dom.wait_for_report(timeout=120)
                libvirt_rows.append(dict(dom.timeline))
            result = asyncio.run(qemu.boot(image, accel=accel, machine="pc", memory_mib=args.memory,
                                           vcpus=args.vcpus, timeout=120))
            qemu_boots.append(result)
            row = libvirt_rows[-1]
            print(f"run {i + 1}: libvirt define {row['defined']:.3f} s, start returned {row['started']:.3f} s, "
                  f"report {row['report']:.3f} s | QEMU launch → report {result.times.userspace_s:.3f} s")
    med = {k: statistics.median(r[k] for r in libvirt_rows) for k in ("defined", "started", "report")}
    raw_spread = qemu.summarize_boots(qemu_boots)[accel].userspace_s
    assert raw_spread is not None  # every boot that returned reached userspace
    raw = raw_spread.median
    print(f"median of {args.runs}: libvirt define {med['defined']:.3f} s, start {med['started']:.3f} s, "
          f"define → guest userspace report {med['report']:.3f} s")
    print(f"median of {args.runs}: raw QEMU launch → report {raw:.3f} s; "
          f"libvirt/raw = {med['report'] / raw:.2f}x")


if __name__ == "__main__":
    main()
