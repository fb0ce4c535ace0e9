"""How long does a libvirt-managed boot of the tiny guest take, step by step?

Run by hand (never in the test suite), as root or as a normal user:

    .venv/bin/python bench/virt_boot.py [--runs 5] [--memory 256] [--vcpus 1]

For each run: define → start returned → report line on the console, in
seconds since the Domain object was created.  Prints per-run rows and the
medians; the machine is shared and noisy, so compare medians, not single runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

from labkit import images, virt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--memory", type=int, default=256, help="MiB")
    parser.add_argument("--vcpus", type=int, default=1)
    args = parser.parse_args()

    image = images.tiny_guest()
    t = time.monotonic()
    with virt.connect() as conn:
        connect_s = time.monotonic() - t
        dtype = conn.domain_type()
        print(f"{conn.uri}, domain type {dtype.type}; connect {connect_s:.3f} s")
        rows = []
        for i in range(args.runs):
            spec = virt.DomainSpec.for_image(f"bench-{i}", image, memory_mib=args.memory, vcpus=args.vcpus,
                                             domain_type=dtype.type)
            with conn.define(spec) as dom:
                dom.start()
                dom.wait_for_report(timeout=120)
                rows.append(dict(dom.timeline))
            print(f"run {i + 1}: define {rows[-1]['defined']:.3f} s, start returned {rows[-1]['started']:.3f} s, "
                  f"report {rows[-1]['report']:.3f} s")
    med = {k: statistics.median(r[k] for r in rows) for k in ("defined", "started", "report")}
    print(f"median of {args.runs}: define {med['defined']:.3f} s, start {med['started']:.3f} s, "
          f"define → guest userspace report {med['report']:.3f} s "
          f"(start → report {med['report'] - med['started']:.3f} s)")


if __name__ == "__main__":
    main()
