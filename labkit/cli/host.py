"""``labkit host [--root DIR] [--json] [--record DIR]``: what is this machine (or a recorded one)?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labkit import host
from labkit.i18n import _


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit host`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    p.add_argument("--root", type=Path, default=Path("/"),
                   help=_("inspect a recorded host (a directory made by --record, or a partial capture) instead"))
    p.add_argument("--json", action="store_true", help=_("print the whole report as JSON"))
    p.add_argument("--record", type=Path, metavar="DIR",
                   help=_("record this host into DIR (to inspect it elsewhere)"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.record:
        print(_("recorded this host into {path}").format(path=host.record(args.record)))
        return 0
    report = host.inspect(args.root)
    if args.json:
        data = report.to_dict()
        data["notebooks"] = [vars(o) for o in host.notebook_outlook(report)]
        print(json.dumps(data, indent=2))
        return 0
    cpu, platform, verdict = report.cpu, report.platform, report.verdict
    vt = verdict.virtualization
    print(_("kernel    Linux {release} ({arch}): {design}").format(release=report.kernel.release, arch=cpu.arch,
                                                                  design=report.kernel.design))
    print(_("cpu       {model}, {cpus} CPUs, hardware virtualization: {extension} ({state})").format(
        model=cpu.model_name, cpus=cpu.logical_cpus or _("unknown number of"),
        extension=vt.extension or _("none known"), state=_(vt.state)))
    print(_("platform  {summary}").format(summary=platform.summary))
    if platform.virtual is not None:
        print("          " + _("decided by: {clue}").format(clue=platform.decided_by))
    for line in platform.conflicts:
        print(f"          ! {line}")
    for line in platform.evidence:
        print(f"          - {line}")
    print(_("kvm       {label}").format(label=verdict.label))
    for reason in verdict.reasons:
        print(f"          - {reason}")
    if verdict.fix:
        print(_("fix       {fix}").format(fix=verdict.fix))
    return 0
