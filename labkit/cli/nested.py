"""``labkit nested``: run a command (or a shell) in an emulated AMD-V machine, where KVM is hardware-style."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pwd
import sys

from labkit import nested
from labkit.cli import seconds
from labkit.i18n import _


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit nested`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    modes = p.add_subparsers(dest="mode", required=True, metavar="MODE")
    run = modes.add_parser("run", help=_("run CMD inside as you, stream its output, exit with its status"))
    shell = modes.add_parser("shell", help=_("an interactive shell inside"))
    for mode in (run, shell):
        mode.add_argument("--memory", type=int, default=nested.machine.DEFAULT_MEMORY_MIB, metavar="MiB",
                          help=_("L1's memory (default {mib})").format(mib=nested.machine.DEFAULT_MEMORY_MIB))
        mode.add_argument("--vcpus", type=int, default=nested.machine.DEFAULT_VCPUS, metavar="N",
                          help=_("L1's virtual CPUs (default {vcpus})").format(vcpus=nested.machine.DEFAULT_VCPUS))
        mode.add_argument("--timeout", type=seconds, default=1800.0, metavar="S",
                          help=_("kill L1 after S seconds (default 1800)"))
        mode.add_argument("--times", action="store_true",
                          help=_("print L1's ready time and the command's duration on stderr as JSON"))
    prepare = modes.add_parser("prepare", help=_("fetch L1's kernel modules and build its initramfs (setup does it)"))
    prepare.set_defaults(func=_prepare)
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    run.set_defaults(func=_run)
    shell.set_defaults(func=_shell, argv=None)


def _run(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    return _report(args, nested.run_sync(argv, memory_mib=args.memory, vcpus=args.vcpus, timeout=args.timeout))


def _prepare(args: argparse.Namespace) -> int:
    kernel, initrd = nested.prepare()
    print(_("L1: kernel {release}, initramfs with kvm-amd and virtiofs {initrd}").format(release=kernel.release,
                                                                                       initrd=initrd))
    return 0


def _shell(args: argparse.Namespace) -> int:
    login = os.environ.get("SHELL") or pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
    return _report(args, nested.run_sync([login, "-i"], memory_mib=args.memory, vcpus=args.vcpus,
                                         timeout=args.timeout, interactive=True))


def _report(args: argparse.Namespace, result: nested.NestedResult) -> int:
    if args.times:
        print(json.dumps({"ready_s": round(result.ready_s, 3), "command_s": round(result.command_s, 3),
                          "total_s": round(result.total_s, 3), "status": result.status,
                          "kernel": result.kernel_release,
                          "stalls": [dataclasses.asdict(s) for s in result.stalls]}), file=sys.stderr)
    return result.status
