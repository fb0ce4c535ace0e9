"""``labkit``: the lab from the command line.

Each subcommand lives in its own module here with a ``register(subparsers)``
function; :data:`COMMANDS` lists them in help order.  Any
:class:`~labkit.errors.LabkitError` becomes one ``labkit: error:`` line with
its fix and exit status 2; an interrupt exits 130 after cleanup has run.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from labkit.errors import LabkitError

COMMANDS = ("doctor", "host", "kvm", "image", "boot", "virt", "cleanup", "run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description="KVM Lab: inspect this host and run real guests.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"labkit.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LabkitError as exc:
        print(f"labkit: error: {exc.what}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("labkit: interrupted", file=sys.stderr)
        return 130
