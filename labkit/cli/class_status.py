"""``labkit class status``: which student passed which exercise check (as root on a hub host)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labkit.classroom import progress
from labkit.cli.results import add_output_options, show
from labkit.hub.plan import STATE_DIR
from labkit.i18n import _


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit class`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    actions = p.add_subparsers(dest="class_command", required=True, metavar="ACTION")
    status = actions.add_parser("status", help=_("a table of each student's exercise checks (root reads every "
                                               "student's own results file)"))
    status.add_argument("users", nargs="*", metavar="USER", help=_("students (default: the hub's)"))
    status.add_argument("--state", type=Path, default=STATE_DIR, help=_("the hub's state folder, for its students"))
    status.add_argument("--json", action="store_true")
    status.add_argument("--plot", type=Path, metavar="PNG", help=_("also save a bar chart"))
    status.set_defaults(func=run_status)
    results = actions.add_parser("results", help=_("the class's `labkit run --export` results per host kind (root "
                                                 "reads every student's own result files)"))
    results.add_argument("users", nargs="*", metavar="USER", help=_("students (default: the hub's)"))
    results.add_argument("--state", type=Path, default=STATE_DIR, help=_("the hub's state folder, for its students"))
    add_output_options(results)
    results.set_defaults(func=run_results)


def run_status(args: argparse.Namespace) -> int:
    report = progress.collect(args.users or progress.hub_students(args.state))
    if args.plot:
        report.plot().figure.savefig(args.plot, bbox_inches="tight")
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0


def run_results(args: argparse.Namespace) -> int:
    from labkit.classroom import results

    merged = results.collect(args.users or progress.hub_students(args.state))
    print(merged.report())
    show(merged.table, args)
    return 0
