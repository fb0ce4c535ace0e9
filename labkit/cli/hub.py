"""``labkit hub start``: a real JupyterHub for a class on this host (as root)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from labkit.errors import AccessDeniedError, InvalidOptionError, MissingToolError
from labkit.hub import accounts, limits
from labkit.hub.plan import STATE_DIR, HubPlan
from labkit.i18n import _

LAB_ROOT = Path(__file__).resolve().parent.parent.parent


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit hub`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    p.description = ("Creates the student accounts (PAM logins), then runs JupyterHub with "
                     "configurable-http-proxy until Ctrl-C or SIGTERM; stopping it stops every "
                     "student's server, guests and processes. ./kvmlab hub installs what it needs.")
    hub = p.add_subparsers(dest="hub_command", required=True, metavar="ACTION")
    start = hub.add_parser("start", help=_("create the accounts and run the hub in the foreground"))
    who = start.add_mutually_exclusive_group(required=True)
    who.add_argument("--students", help=_("comma-separated login names (created if missing)"))
    who.add_argument("--count", type=int, help=_("this many students, named student1, student2, ..."))
    start.add_argument("--passwords", type=Path, metavar="FILE",
                       help=_("'name:password' lines; new accounts not in it get a random password, "
                            "written to STATE/passwords (root only)"))
    start.add_argument("--ip", type=ip_address, default="", help=_("address to listen on (default: all)"))
    start.add_argument("--port", type=port_number, default=8000, help=_("TCP port to listen on (default 8000)"))
    start.add_argument("--state", type=Path, default=STATE_DIR,
                       help=_("hub state folder (default {path})").format(path=STATE_DIR))
    start.add_argument("--memory-mib", type=int, default=2048, help=_("memory cap per student (0: none)"))
    start.add_argument("--cpus", type=float, default=1.0, help=_("CPU quota per student (0: none)"))
    start.add_argument("--cache", type=Path, default=Path("/var/cache/labkit"),
                       help=_("shared read-only guest image cache (built if missing)"))
    start.set_defaults(func=run_start)


def ip_address(text: str) -> str:
    """argparse type of ``--ip``: an IPv4 or IPv6 address, or empty (every address)."""
    if not text:
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address (e.g. 0.0.0.0, 127.0.0.1 or ::)") from None


def port_number(text: str) -> int:
    """argparse type of ``--port``: a TCP port, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range: use 1 to 65535 (e.g. 8000)")
    return port


def students_from(args: argparse.Namespace) -> tuple[str, ...]:
    if args.count is not None:
        if not 1 <= args.count <= 500:
            raise InvalidOptionError(f"--count {args.count} is out of range", "use 1 to 500 students")
        return tuple(f"student{i}" for i in range(1, args.count + 1))
    names = tuple(n.strip() for n in args.students.split(",") if n.strip())
    if not names:
        raise InvalidOptionError(f"--students {args.students!r} names no student",
                                 "give comma-separated login names (--students alice,bob) or --count N")
    return tuple(accounts.check_name(n) for n in names)


def _interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM stops the hub the way Ctrl-C does (servers, proxy, then the leftover check)."""
    raise KeyboardInterrupt


def run_start(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise AccessDeniedError("the hub creates accounts and runs each student's server as them: it needs root",
                                "sudo ./kvmlab hub start ...")
    from labkit.hub import claim

    students = students_from(args)
    plan = HubPlan(LAB_ROOT, students, args.state, args.ip, args.port,
                   limits.Limits(args.memory_mib or None, args.cpus or None), args.cache)
    given = accounts.read_passwords(args.passwords) if args.passwords else {}
    for name in students:
        accounts.check_student(name)
    with claim.claim(plan):  # before anything is touched: one hub per state folder and port
        return _serve(plan, given)


def _serve(plan: HubPlan, given: dict[str, str]) -> int:
    """Accounts, the shared image, then JupyterHub until Ctrl-C/SIGTERM; 1 if it died or left something."""
    from labkit.hub import privacy, server  # imports nothing of JupyterHub's; the spawner does, inside the hub

    students = plan.students
    made = {}
    for name in students:
        password = given.get(name)
        if password is None and accounts.lookup(name) is None:
            password = made[name] = secrets.token_urlsafe(9)
        accounts.ensure(name, password)
    plan.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if made:
        secret = plan.state_dir / "passwords"
        with open(os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as fh:
            fh.writelines(f"{n}:{p}\n" for n, p in made.items())
        print(f"new accounts' passwords: {secret}")
    # the shared read-only guest image (quick when it is there already)
    built = subprocess.run([sys.executable, "-m", "labkit", "image", "build", "--into", str(plan.shared_cache)])
    if built.returncode != 0:
        raise MissingToolError(f"the shared guest image could not be built into {plan.shared_cache}",
                               "see the error above; or build it first: sudo labkit image build --into DIR")
    support = limits.detect()
    print(f"limits per student: {plan.limits.memory_mib or 'no'} MiB, {plan.limits.cpus or 'no'} CPU quota — "
          + (f"enforced ({support.reason})" if support.version else f"NOT enforced: {support.reason}"))
    seen = privacy.process_privacy()
    print(f"process privacy: {seen.detail}" + ("" if seen.hidden else f"; fix: {privacy.FIX}"))
    signal.signal(signal.SIGTERM, _interrupt)
    asked_to_stop = False
    try:
        with server.running(plan) as proc:
            print(f"JupyterHub for {len(students)} students at {plan.url}/ (log: {server.log_file(plan)}); "
                  "Ctrl-C stops it")
            try:
                proc.wait()
            except KeyboardInterrupt:
                asked_to_stop = True
                print("stopping the hub and every student's server...")
        if not asked_to_stop:
            print(f"labkit: error: JupyterHub exited by itself (status {proc.returncode})\n"
                  f"  fix: read {server.log_file(plan)}", file=sys.stderr)
    finally:  # also when JupyterHub failed to start: what it left is reported
        left = server.leftovers(plan)
        for line in left:
            print(f"left behind: {line}", file=sys.stderr)
    return 1 if left or not asked_to_stop else 0
