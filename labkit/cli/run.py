"""``labkit run [NOTEBOOK...] [-p NAME VALUE]... [--sweep NAME=V1,V2] [--repeat N] [--export [FILE]] [--out DIR]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from labkit import i18n, runner, runtime
from labkit.errors import InvalidOptionError
from labkit.i18n import _
from labkit.results.declaration import Declaration, declaration, meaning


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit run`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                   help=_("notebooks to run (path, name like 04_qemu, or number like 04); default: all, in order"))
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help=_("set a parameter of the notebooks that declare it (VALUE is a Python literal or text)"))
    p.add_argument("--sweep", metavar="NAME=V1,V2,...",
                   help=_("run once per value of one parameter; plots each result the parameter drives"))
    p.add_argument("--repeat", type=_count, default=1, metavar="N",
                   help=_("run every point N times; the summary shows the median and the spread"))
    p.add_argument("--label", default="", metavar="TEXT",
                   help=_("a label kept with the results (e.g. your name for a class): the only personal data"))
    p.add_argument("--export", nargs="?", type=Path, const=Path(), metavar="FILE",
                   help=_("also write a shareable result file (no host, user or path names); without FILE into "
                        "~/.local/share/labkit/runs/, where `labkit class results` finds it"))
    p.add_argument("--list-sweeps", action="store_true",
                   help=_("list the parameters the chosen notebooks declare and the results each drives"))
    p.add_argument("--lang", default="en", metavar="LANG",
                   help=_("the edition to run: en (notebooks/) or ko (notebooks/ko/, labkit's messages in Korean)"))
    p.add_argument("--out", type=Path, default=Path("labkit-runs"),
                   help=_("folder for the executed notebooks and the table (results.csv, results.jsonl)"))
    p.add_argument("--no-progress", action="store_true", help=_("no progress bar"))
    p.set_defaults(func=run)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: every point runs at least once (e.g. --repeat 3)")
    return value


def parse_sweep(text: str) -> tuple[str, list[object]]:
    """``NAME=V1,V2,...`` as (name, values): a Python identifier and distinct literals, or one clear error."""
    name, sep, values = text.partition("=")
    parsed = [runner.parse_value(v.strip()) for v in values.split(",")] if values else []
    if not sep or not name.isidentifier() or not parsed or any(v == "" for v in parsed):
        raise InvalidOptionError(f"--sweep {text!r} is not NAME=V1,V2,...",
                                 "e.g. --sweep loop_iterations=10000000,50000000")
    if len(set(map(repr, parsed))) != len(parsed):
        raise InvalidOptionError(f"--sweep {text!r} names a value twice", "use --repeat N to run a point N times")
    return name, parsed


def list_sweeps(declarations: list[Declaration], lang: str) -> str:
    """Each declared parameter: the notebook, what it means, the results it drives."""
    lines = [f"{d.notebook}: {name} ({meaning(info.meaning, lang, name)}) drives {', '.join(info.drives) or '-'}"
             for d in declarations for name, info in d.parameters.items()]
    return "\n".join(lines) or "the chosen notebooks declare no parameter that drives a recorded result"


def run(args: argparse.Namespace) -> int:
    from labkit.results import context, plot, share, table

    for stale in runtime.orphan_kernel_files():  # a run killed with -9 could not delete its kernel's file
        stale.unlink(missing_ok=True)
    paths = runner.resolve(args.notebooks, args.lang)
    declarations = {p.stem: declaration(p) for p in paths}  # a file that is no notebook stops here
    if args.list_sweeps:
        print(list_sweeps(list(declarations.values()), args.lang))
        return 0
    params = {name: runner.parse_value(value) for name, value in args.parameter}
    if args.lang != "en":
        params.setdefault("lang", args.lang)  # every notebook declares lang; an edition's default is its own
    if args.label and any("run_id" in d.assigned for d in declarations.values()):
        params.setdefault("run_id", args.label)  # the notebooks record it with their results
    sweep = parse_sweep(args.sweep) if args.sweep is not None else None
    results = runner.run(paths, args.out, params, sweep, progress=not args.no_progress, repeat=args.repeat)
    if args.lang != "en":
        i18n.use(args.lang)  # the summary's plot speaks the edition's language
    data = table.build(results, declarations, context.context(), label=args.label, lang=args.lang)
    csv, jsonl = table.save(data, args.out)
    print(table.summary(data, sweep[0] if sweep else None, declarations))
    if sweep and plot.sweep_panels(data, sweep[0], declarations):  # not when every declaring run failed
        print(f"plot: {plot.sweep(data, sweep[0], declarations, args.out / f'sweep-{sweep[0]}.png', args.lang)}")
    if args.export is not None:
        exported = (share.keep(data, args.label) if args.export == Path() else
                    share.write(data, args.export, args.label))
        print(f"result file to share: {exported}")
    failed = [r for r in results if not r.ok]
    for r in failed:
        assert r.failure is not None  # not ok
        print(f"FAILED {r.notebook}: cell {r.failure.index} ({r.failure.source_head!r}) raised "
              f"{r.failure.error}; executed notebook: {r.output}")
    print(f"table: {csv} and {jsonl}; executed notebooks are in {args.out}/")
    return 1 if failed else 0
