"""``labkit run [NOTEBOOK...] [-p NAME VALUE]... [--sweep NAME=V1,V2] [--lang en|ko] [--out DIR]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from labkit import runner, runtime
from labkit.errors import InvalidOptionError


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit run`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                   help="notebooks to run (path, name like 04_qemu, or number like 04); default: all, in order")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="set a parameter of the notebooks that declare it (VALUE is a Python literal or text)")
    p.add_argument("--sweep", metavar="NAME=V1,V2,...",
                   help="run once per value of one parameter; prints a comparison table and saves a plot")
    p.add_argument("--lang", default="en", metavar="LANG",
                   help="the edition to run: en (notebooks/) or ko (notebooks/ko/, labkit's messages in Korean)")
    p.add_argument("--out", type=Path, default=Path("labkit-runs"), help="folder for executed notebooks")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _sweep(text: str | None) -> tuple[str, list[object]] | None:
    if text is None:
        return None
    name, sep, values = text.partition("=")
    if not sep or not name or not values:
        raise InvalidOptionError(f"--sweep {text!r} is not NAME=V1,V2,...", "e.g. --sweep memory_mib=128,256")
    return name, [runner.parse_value(v) for v in values.split(",")]


def run(args: argparse.Namespace) -> int:
    for stale in runtime.orphan_kernel_files():  # a run killed with -9 could not delete its kernel's file
        stale.unlink(missing_ok=True)
    paths = runner.resolve(args.notebooks, args.lang)
    params = {name: runner.parse_value(value) for name, value in args.parameter}
    if args.lang != "en":
        params.setdefault("lang", args.lang)  # every notebook declares lang; an edition's default is its own
    sweep = _sweep(args.sweep)
    results = runner.run(paths, args.out, params, sweep, progress=not args.no_progress)
    print(runner.table(results, sweep[0] if sweep else None))
    if sweep:
        print(f"plot: {runner.plot_sweep(results, sweep[0], args.out / f'sweep-{sweep[0]}.png')}")
    failed = [r for r in results if not r.ok]
    for r in failed:
        assert r.failure is not None  # not ok
        print(f"FAILED {r.notebook}: cell {r.failure.index} ({r.failure.source_head!r}) raised "
              f"{r.failure.error}; executed notebook: {r.output}")
    print(f"executed notebooks are in {args.out}/")
    return 1 if failed else 0
