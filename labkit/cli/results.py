"""``labkit results merge FILE... [--result NAME]... [--plot PNG] [--csv FILE]``: many machines' runs in one picture."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.errors import InvalidOptionError
from labkit.i18n import _

if TYPE_CHECKING:
    import pandas as pd


def register(p: argparse.ArgumentParser) -> None:
    """The actions of `labkit results`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    actions = p.add_subparsers(dest="results_command", required=True, metavar="ACTION")
    merge = actions.add_parser("merge", help=_("merge result files: per host kind (hardware KVM, nested, PVM, no KVM)"))
    merge.add_argument("files", nargs="+", type=Path, metavar="FILE", help=_("result files (labkit run --export FILE)"))
    add_output_options(merge)
    merge.set_defaults(func=run_merge)


def add_output_options(p: argparse.ArgumentParser) -> None:
    """The options every merged view has (``labkit results merge``, ``labkit class results``)."""
    p.add_argument("--result", action="append", default=[], metavar="NAME",
                   help=_("only this recorded result (repeatable; default: every numeric one)"))
    p.add_argument("--plot", type=Path, metavar="PNG", help=_("save the distribution per host kind as a plot"))
    p.add_argument("--csv", type=Path, metavar="FILE", help=_("save the merged table as CSV"))


def show(table: pd.DataFrame, args: argparse.Namespace) -> None:
    """Print the per-host-kind summary of ``table``; save its plot and CSV where asked."""
    from labkit import i18n
    from labkit.results import plot
    from labkit.results.table import host_kind_summary

    have = sorted(table.loc[table["value"].notna(), "result"].unique())
    missing = [r for r in args.result if r not in have]
    if missing:
        raise InvalidOptionError(f"no run in these files recorded {missing}",
                                 f"choose --result from: {', '.join(have)}")
    print(host_kind_summary(table, args.result or None))
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
        print(f"table: {args.csv}")
    if args.plot:
        declared = _declarations(table["notebook"].unique())
        print(f"plot: {plot.by_host_kind(table, args.plot, args.result or None, declared, i18n.current())}")


def _declarations(notebooks) -> dict:
    """The lab's own declarations of the merged notebooks (their results' meanings), where this checkout has them."""
    from labkit import runner
    from labkit.results.declaration import declaration

    found = {}
    for name in notebooks:
        try:
            [path] = runner.resolve([str(name)])
        except InvalidOptionError:
            continue
        found[str(name)] = declaration(path)
    return found


def run_merge(args: argparse.Namespace) -> int:
    from labkit.results import share

    show(share.merge([share.read(path) for path in args.files]), args)
    return 0
