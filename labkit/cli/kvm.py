"""``labkit kvm demo``: a real guest on /dev/kvm; ``labkit kvm linux``: labkit's own VMM boots the tiny Linux."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from labkit.cli import seconds
from labkit.i18n import _
from labkit.kvm import guests
from labkit.kvm.machine import Machine


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit kvm`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    kvm_sub = p.add_subparsers(dest="kvm_command", required=True, metavar="SUBCOMMAND")
    demo = kvm_sub.add_parser("demo", help=_("run a hello guest; print its serial output and its exits"))
    demo.add_argument("--mode", choices=list(guests.HELLO), default="long",
                      help=_("CPU mode the guest runs in (switch: real→protected→long inside the guest; "
                           "ring3: drop from ring 0 to ring 3) [default: long]"))
    demo.add_argument("--pages", choices=["4K", "2M", "1G"], default="2M",
                      help=_("page size of the identity map in long mode [default: 2M]"))
    demo.add_argument("--trace", action="store_true", help=_("print every KVM ioctl as it is made"))
    demo.add_argument("--source", action="store_true", help=_("print the guest's assembly source first"))
    demo.set_defaults(func=run_demo)
    linux = kvm_sub.add_parser("linux", help=_("boot the tiny Linux guest with labkit's own VMM (no QEMU); "
                                             "print its report, times and exits"))
    linux.add_argument("--command", help=_("a shell command the guest runs after its report"))
    linux.add_argument("--memory", type=int, default=128, metavar="MiB", help=_("guest memory (default 128)"))
    linux.add_argument("--vcpus", type=int, default=1, metavar="N", help=_("virtual CPUs (this VMM boots 1)"))
    linux.add_argument("--kernel", type=Path,
                       help=_("boot this kernel (a vmlinux or bzImage) instead of the cached one"))
    linux.add_argument("--timeout", type=seconds, default=60.0, metavar="S", help=_("give up after S seconds (60)"))
    linux.add_argument("--console", action="store_true", help=_("stream the guest's console while it boots"))
    linux.add_argument("--json", action="store_true", help=_("print the result as JSON"))
    linux.set_defaults(func=run_linux)


def run_demo(args: argparse.Namespace) -> int:
    guest = guests.guest(guests.HELLO[args.mode])
    if args.source:
        print(guest.source)
    with Machine(guest, pages=args.pages, trace=print if args.trace else None) as machine:
        result = machine.run()
    print(_("guest {name}: {summary}; ended in {state}").format(name=guest.name, summary=guest.summary,
                                                                state=result.special.describe()))
    print(_("serial output:"))
    for line in result.serial.splitlines():
        print(f"  {line}")
    print(_("stopped by: {why}").format(why=result.stopped_by))
    print(_("exits: {count}").format(count=result.total_exits))
    print(result.exit_table())
    return 0


def run_linux(args: argparse.Namespace) -> int:
    from labkit import vmm  # the VMM and the host's verdict: only this subcommand needs them

    stream = (lambda text: print(text, end="", file=sys.stderr, flush=True)) if args.console else None
    result = vmm.boot(args.kernel, command=args.command, memory_mib=args.memory, vcpus=args.vcpus,
                      timeout=args.timeout, on_output=stream)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    r, t = result.report, result.times
    print(f"vmm        labkit (KVM), 1 vCPU, {result.memory_mib} MiB; kernel {result.kernel} ({result.kernel_kind})")
    print(f"guest      Linux {r.kernel_release}, {r.cpus} CPU, {r.memory_mib} MiB usable; "
          f"CPUID says: {r.hypervisor or 'none'}; clocksource {r.clocksource}")
    print(f"timings    setup {t.setup_s:.2f} s, then the report {t.report_after_first_run_s:.2f} s after the "
          f"first KVM_RUN (userspace {t.userspace_s:.2f} s since launch; the guest's clock at /init: "
          f"{t.guest_uptime_s:.2f} s)")
    print(f"exits      {result.total_exits} in all; IRQ 4 raised {result.interrupts} times")
    width = max(map(len, result.exits), default=0)
    for name, count in sorted(result.exits.items(), key=lambda item: -item[1]):
        print(f"           {name:<{width}}  {count:>7}")
    if r.command_output is not None:
        print(f"command    exit status {r.command_status}:\n{r.command_output.rstrip()}")
    return 0
