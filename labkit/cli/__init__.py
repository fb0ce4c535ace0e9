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

from labkit.errors import LabkitError, MissingToolError

COMMANDS = ("doctor", "host", "kvm", "image", "boot", "virt", "nested", "cleanup", "run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labkit", description="KVM Lab: inspect this host and run real guests.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"labkit.cli.{name}")
        except ImportError as exc:  # e.g. libvirt-python missing: the other commands still work
            _register_unavailable(sub, name, exc)
            continue
        module.register(sub)
    return parser


def _register_unavailable(sub: argparse._SubParsersAction, name: str, exc: ImportError) -> None:
    """A stand-in for a command whose Python dependencies are missing: it says which, and the fix."""
    def unavailable(_args: argparse.Namespace) -> int:
        raise MissingToolError(f"`labkit {name}` needs the Python module {exc.name!r}, which is not installed",
                               "./kvmlab setup (or: pip install -e '.[test]' in the lab's venv)")

    p = sub.add_parser(name, help=f"(unavailable: {exc.name} is not installed)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=unavailable)


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
