"""``labkit cleanup [--all-users] [--force] [--dry-run] [--json] [--cache]``: remove what the lab left behind."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labkit import cleanup, images
from labkit.errors import InvalidOptionError
from labkit.i18n import _


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit cleanup`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    p.description = _("Finds what the lab made by its names (labkit-<user>-..., scratch dirs in "
                     "/tmp/labkit-<user>) and removes the orphans: things whose labkit process is "
                     "gone, and dead Jupyter kernels' connection files. A notebook that still runs "
                     "keeps its guests (it releases them itself); --force removes those too. The "
                     "guest image cache is only emptied with --cache.")
    p.add_argument("--all-users", action="store_true", help=_("as root: every user's leftovers"))
    p.add_argument("--force", action="store_true",
                   help=_("also what still-running lab processes (a notebook) own; by default only orphans go"))
    p.add_argument("--dry-run", action="store_true", help=_("only say what would be removed"))
    p.add_argument("--json", action="store_true", help=_("print the report as JSON"))
    p.add_argument("--cache", action="store_true",
                   help=_("instead: empty your guest image cache (images in use this minute stay; the next boot "
                        "builds what it needs, fetching the kernel package again)"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.cache:
        return run_cache(args)
    report = cleanup.cleanup(all_users=args.all_users, force=args.force, dry_run=args.dry_run)
    show(report, args.json)
    return 1 if report.failed else 0


def run_cache(args: argparse.Namespace) -> int:
    """``--cache``: the user's image cache, emptied (``--dry-run``: only its size)."""
    if args.all_users:
        raise InvalidOptionError("--cache empties your own image cache; other users' caches are theirs",
                                 "drop --all-users")
    gone: list[Path]
    if args.dry_run:
        gone, freed = [], images.cache_size()
    else:
        gone, freed = images.clear_cache()
    if args.json:
        print(json.dumps({"cache": str(images.user_cache()), "dry_run": args.dry_run,
                          "removed": [str(p) for p in gone], "freed_bytes": freed}, indent=2))
    else:
        print(f"{'would free' if args.dry_run else 'removed ' + str(len(gone)) + ' image(s), freed'} "
              f"{freed / 2**20:.1f} MiB in {images.user_cache()}")
    return 0


def show(report: cleanup.CleanupReport, as_json: bool = False) -> None:
    """Print a cleanup report: one row per thing found, then a summary line (or JSON)."""
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    whose = "every user" if report.users == ("*",) else ", ".join(report.users)
    for note in report.notes:
        print(f"note: {note}")
    if not report.items:
        print(f"nothing left behind by the lab for {whose} (QEMU processes, libvirt domains, scratch dirs, logs)")
        return
    rows = [("action", "kind", "user", "owner", "name", "why")]
    for i in report.items:
        owner = "-" if i.owner_pid is None else f"{i.owner_pid} ({'running' if i.owner_alive else 'gone'})"
        rows.append((i.action, i.kind, i.user, owner, i.name, i.detail))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    removed = "would remove" if report.dry_run else "removed"
    print(f"{len(report.removed)} {removed}, {len(report.kept)} kept, {len(report.failed)} failed, for {whose}"
          + ("; --force also removes the kept ones" if report.kept and not report.force else ""))
