"""``labkit kvm demo --mode real|protected|long|switch|ring3``: a real guest on /dev/kvm, from the shell."""

from __future__ import annotations

import argparse

from labkit.kvm import guests
from labkit.kvm.machine import Machine


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit kvm`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    kvm_sub = p.add_subparsers(dest="kvm_command", required=True, metavar="SUBCOMMAND")
    demo = kvm_sub.add_parser("demo", help="run a hello guest; print its serial output and its exits")
    demo.add_argument("--mode", choices=list(guests.HELLO), default="long",
                      help="CPU mode the guest runs in (switch: real→protected→long inside the guest; "
                           "ring3: drop from ring 0 to ring 3) [default: long]")
    demo.add_argument("--pages", choices=["4K", "2M", "1G"], default="2M",
                      help="page size of the identity map in long mode [default: 2M]")
    demo.add_argument("--trace", action="store_true", help="print every KVM ioctl as it is made")
    demo.add_argument("--source", action="store_true", help="print the guest's assembly source first")
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    guest = guests.guest(guests.HELLO[args.mode])
    if args.source:
        print(guest.source)
    with Machine(guest, pages=args.pages, trace=print if args.trace else None) as machine:
        result = machine.run()
    print(f"guest {guest.name}: {guest.summary}; ended in {result.special.describe()}")
    print("serial output:")
    for line in result.serial.splitlines():
        print(f"  {line}")
    print(f"stopped by: {result.stopped_by}")
    print(f"exits: {result.total_exits}")
    print(result.exit_table())
    return 0
