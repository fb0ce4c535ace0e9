"""``labkit host [--root DIR] [--json] [--record DIR]``: what is this machine?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labkit import host


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("host", help="kernel, CPU, bare metal or VM, and the /dev/kvm verdict")
    p.add_argument("--root", type=Path, default=Path("/"),
                   help="inspect a recorded host tree instead of this one")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("--record", type=Path, metavar="DIR",
                   help="record this host into DIR (to inspect it elsewhere)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.record:
        print(f"recorded this host into {host.record(args.record)}")
        return 0
    report = host.inspect(args.root)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(f"kernel    Linux {report.kernel.release}: {report.kernel.design}")
    print(f"cpu       {report.cpu.model_name}, {report.cpu.logical_cpus} CPUs, "
          f"hardware virtualization: {report.cpu.hardware_virtualization or 'none'}")
    print(f"platform  {report.platform.summary}")
    for line in report.platform.evidence:
        print(f"          - {line}")
    print(f"kvm       {report.verdict.label}")
    for line in report.verdict.reasons:
        print(f"          - {line}")
    if report.verdict.fix:
        print(f"fix       {report.verdict.fix}")
    return 0
