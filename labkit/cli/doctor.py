"""``labkit doctor [--json]``: a readiness report, one line per check."""

from __future__ import annotations

import argparse
import json
import socket
import unicodedata

from labkit import doctor, host
from labkit.i18n import _
from labkit.i18n import noop as N_

_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def _columns(text: str) -> int:
    """How many terminal columns ``text`` takes: Hangul and other wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
#: The checks' names as the learner reads them (``labkit doctor --json`` keeps the English names).
CHECK_NAMES = (N_("kernel"), N_("cpu"), N_("platform"), N_("kvm"), N_("guest image"), N_("libvirt"), N_("students"),
               N_("process privacy"), N_("per seat"))


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit doctor`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    p.add_argument("--json", action="store_true", help=_("print the checks as JSON"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = host.inspect()
    checks = doctor.run_checks(report)
    ready = doctor.can_run(checks)
    if args.json:  # one document per lab machine, for an instructor to collect
        seats = doctor.seat_estimate(report)
        print(json.dumps({"ready": ready, "hostname": socket.gethostname(), "kvm": report.verdict.kind,
                          "summary": doctor.summary(checks),
                          "limited_notebooks": [c.name for c in doctor.limited_notebooks(checks)],
                          "checks": doctor.as_dicts(checks),
                          "seat": {"per_seat_mib": seats.per_seat_mib, "parts_mib": seats.parts_mib,
                                   "available_mib": seats.available_mib, "seats_by_memory": seats.seats_by_memory,
                                   "simultaneous_boots": seats.simultaneous_boots}}, indent=2))
    else:
        names = {c.name: _(c.name) for c in checks}
        width = max(map(_columns, names.values()))
        for c in checks:
            name = names[c.name]
            print(f"[{_MARK[c.status]}] {name}{' ' * (width - _columns(name))}  {c.detail}")
            if c.fix and c.status != "ok":
                print(f"       {'':<{width}}  " + _("fix: {fix}").format(fix=c.fix))
        print("\n" + doctor.summary(checks))
    return 0 if ready else 1
