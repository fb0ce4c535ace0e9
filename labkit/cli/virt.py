"""``labkit virt up|down|status|boot|cleanup``: libvirt guests from the command line.

Each subcommand prints the ``virsh`` command that does the same thing by hand,
so the CLI teaches the tool it wraps.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import time
from dataclasses import asdict

import psutil

from labkit import cleanup, images, libvirtd, virt
from labkit.cli import cleanup as cli_cleanup
from labkit.cli import seconds
from labkit.i18n import _


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit virt`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    vsub = p.add_subparsers(dest="virt_command", required=True, metavar="ACTION")
    up = vsub.add_parser("up", help=_("make sure a libvirt daemon answers (as root: start libvirtd if none runs)"))
    up.add_argument("--idle-timeout", type=int, default=libvirtd.IDLE_TIMEOUT_S, metavar="S",
                    help=_("a daemon labkit starts exits after S seconds without clients or guests "
                         "(0: never; default %(default)s)"))
    up.set_defaults(func=run_up)
    vsub.add_parser("down", help=_("destroy your lab guests and stop the libvirtd labkit started")).set_defaults(
        func=run_down)
    status = vsub.add_parser("status", help=_("connection, daemon, domain type and your lab guests"))
    status.add_argument("--json", action="store_true", help=_("print as JSON"))
    status.set_defaults(func=run_status)
    vsub.add_parser("cleanup", help=_("destroy and undefine all your lab guests (labkit-<you>-*), also those of "
                                    "running notebooks (labkit cleanup: everything, orphans only)")).set_defaults(
        func=run_cleanup)
    boot = vsub.add_parser("boot", help=_("start and watch the tiny guest through libvirt (a transient domain, "
                                        "gone with this command even if it is killed), then remove it"))
    boot.add_argument("--name", default="cli", help=_("short domain name (default %(default)s)"))
    boot.add_argument("--memory", type=int, default=256, metavar="MIB", help=_("guest memory (default %(default)s)"))
    boot.add_argument("--vcpus", type=int, default=1, help=_("virtual CPUs (default %(default)s)"))
    boot.add_argument("--timeout", type=seconds, default=120, metavar="S", help=_("wait this long for the report"))
    boot.add_argument("--xml", action="store_true", help=_("print the domain XML labkit defines"))
    boot.add_argument("--cmdline", action="store_true", help=_("print the QEMU command line libvirt generated"))
    boot.set_defaults(func=run_boot)


def run_up(args: argparse.Namespace) -> int:
    choice = virt.choose_uri()
    if choice.uri == virt.SYSTEM_URI and os.geteuid() == 0:
        daemon = libvirtd.start(idle_timeout_s=args.idle_timeout)
        print(daemon.detail)
    with virt.connect(start_daemon=False) as conn:
        print(_("connected to {uri}: {reason}").format(uri=conn.uri, reason=conn.choice.reason))
        print("  " + _("by hand: virsh -c {uri} uri").format(uri=conn.choice.uri))
    return 0


def run_down(_args: argparse.Namespace) -> int:
    choice = virt.choose_uri()
    if choice.uri != virt.SYSTEM_URI or os.geteuid() != 0:
        with virt.connect(start_daemon=False) as conn:
            removed = conn.cleanup()
        print(f"removed {len(removed)} lab guest(s); {choice.uri} is a per-user daemon that libvirt starts and "
              "stops by itself (it exits after 120 s idle)" if choice.uri == virt.SESSION_URI else
              f"removed {len(removed)} lab guest(s) on {choice.uri}; labkit only stops a daemon it started")
        return 0
    current = libvirtd.status()
    if current.running:
        with virt.connect(start_daemon=False) as conn:
            for name in conn.cleanup():
                print(f"destroyed and undefined {name}   (virsh destroy {name}; virsh undefine {name})")
    print(libvirtd.stop().detail)
    return 0


def run_status(args: argparse.Namespace) -> int:
    choice = virt.choose_uri()
    daemon = libvirtd.status(choice.uri) if choice.uri == virt.SYSTEM_URI else None
    data: dict = {"uri": choice.uri, "reason": choice.reason,
                  "daemon": asdict(daemon) if daemon else None}
    if daemon is None or daemon.running:
        with virt.connect(start_daemon=False) as conn:
            dtype = conn.domain_type()
            data["domain_type"] = asdict(dtype)
            data["guests"] = {name: asdict(s) for name, s in conn.all_stats().items()}
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(_("uri          {uri}  ({reason})").format(uri=choice.uri, reason=choice.reason))
    if daemon:
        print(_("daemon       {detail}").format(detail=daemon.detail))
        if not daemon.running:
            print("             " + _("fix: {fix}").format(fix=("sudo " if os.geteuid() else "") + "labkit virt up"))
            return 1
    print(_("domain type  {type}  ({reason})").format(type=dtype.type, reason=dtype.reason))
    print(_("lab guests   {count}   (virsh -c {uri} list --all)").format(count=len(data["guests"]), uri=choice.uri))
    for name, s in data["guests"].items():
        print(f"  {name:<32} {s['state']:<10} cpu {s['cpu_time_ns'] / 1e9:.2f} s  {s['memory_kib'] >> 10} MiB")
    return 0


def run_cleanup(_args: argparse.Namespace) -> int:
    """Every lab domain of yours, also a running notebook's: `labkit cleanup --force`, for libvirt only."""
    report = cleanup.cleanup(force=True, kinds=("domain", "log"))
    cli_cleanup.show(report)
    return 1 if report.failed else 0


def run_boot(args: argparse.Namespace) -> int:
    image = images.tiny_guest(fetch=False)  # offline: from the cache `labkit image build` (setup) made
    spec = virt.DomainSpec.for_image(args.name, image, memory_mib=args.memory, vcpus=args.vcpus)
    spec.validate()  # a bad name, size or count is refused before libvirtd is even asked
    try:
        return _boot(args, spec)
    except virt.VirtError:
        _remove_if_orphaned(spec.domain_name)
        raise


def _remove_if_orphaned(name: str) -> None:
    """The guest ``name`` after a failure, if it outlived it: destroyed through a fresh connection.

    A daemon killed while it created the guest leaves QEMU running and its
    state files (``qemu/run/NAME.xml``, ``.pid``, the monitor socket) on disk,
    and the domain object was never handed back to close.  The next daemon
    (started by connecting again) reads those state files and takes the guest
    over; destroying it then stops QEMU and removes them, as libvirt would.
    """
    with contextlib.suppress(virt.VirtError), virt.connect() as conn:
        deadline = time.monotonic() + 15
        while name in conn.domains() and time.monotonic() < deadline:  # the new daemon may be settling it itself
            conn.cleanup([name])
            time.sleep(0.2)
    for pid in virt.qemu_pids(name):  # no daemon took it over: stop the QEMU ourselves
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            proc.terminate()
            if psutil.wait_procs([proc], timeout=5)[1]:
                proc.kill()
    libvirtd.remove_stale_state(virt.choose_uri().uri, name)


def _boot(args: argparse.Namespace, spec: virt.DomainSpec) -> int:
    with virt.connect() as conn:
        dtype = conn.domain_type()
        print(_("{uri}: domain type {type} ({reason})").format(uri=conn.uri, type=dtype.type, reason=dtype.reason))
        spec = dataclasses.replace(spec, domain_type=dtype.type)
        with conn.transient(spec) as dom:
            if args.xml:
                print(dom.xml)
            dom.start()
            print(_("started {name}   (virsh create FILE --autodestroy: transient, and destroyed by libvirt if this "
                    "command dies)").format(name=dom.name))
            report = dom.wait_for_report(timeout=args.timeout)
            t = dom.timeline
            print(_("report: Linux {release}, {cpus} CPU(s), {memory} MiB, hypervisor {hypervisor}; guest userspace "
                    "{uptime:.2f} s after its kernel started").format(
                release=report.kernel_release, cpus=report.cpus, memory=report.memory_mib,
                hypervisor=report.hypervisor or _("none"), uptime=report.uptime_s))
            print(_("times: start returned {started:.2f} s, report {report:.2f} s (create → guest userspace)").format(
                started=t["started"], report=t["report"]))
            if args.cmdline:
                print(_("QEMU command line libvirt generated   (virsh domxml-to-native qemu-argv --domain NAME):"))
                print("  " + " ".join(shlex.quote(a) for a in dom.qemu_command_line()))
        print(_("events: {events}").format(events=virt.event_list(dom.events)))
        print(_("destroyed {name}   (virsh destroy: a transient domain leaves no definition)").format(name=dom.name))
    return 0
