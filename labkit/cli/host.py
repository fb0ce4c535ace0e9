"""``labkit host [--root DIR] [--json] [--record DIR]``: what is this machine (or a recorded one)?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labkit import host


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit host`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    p.add_argument("--root", type=Path, default=Path("/"),
                   help="inspect a recorded host (a directory made by --record, or a partial capture) instead")
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
        data = report.to_dict()
        data["notebooks"] = [vars(o) for o in host.notebook_outlook(report)]
        print(json.dumps(data, indent=2))
        return 0
    cpu, platform, verdict = report.cpu, report.platform, report.verdict
    print(f"kernel    Linux {report.kernel.release} ({cpu.arch}): {report.kernel.design}")
    print(f"cpu       {cpu.model_name}, {cpu.logical_cpus or 'unknown number of'} CPUs, "
          f"hardware virtualization: {verdict.virtualization.extension or 'none known'} "
          f"({verdict.virtualization.state})")
    print(f"platform  {platform.summary}")
    if platform.virtual is not None:
        print(f"          decided by: {platform.decided_by}")
    for line in platform.conflicts:
        print(f"          ! {line}")
    for line in platform.evidence:
        print(f"          - {line}")
    print(f"kvm       {verdict.label}")
    for line in verdict.reasons:
        print(f"          - {line}")
    if verdict.fix:
        print(f"fix       {verdict.fix}")
    return 0
