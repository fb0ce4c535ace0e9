"""``labkit boot``: boot the tiny guest under QEMU and print what it saw and how long it took."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from labkit import images, qemu
from labkit.cli import seconds
from labkit.i18n import _


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit boot`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help=_("auto: KVM where it can boot Linux, else TCG (default)"))
    p.add_argument("--memory", type=int, default=128, metavar="MiB", help=_("guest memory (default 128)"))
    p.add_argument("--vcpus", type=int, default=1, metavar="N", help=_("virtual CPUs (default 1)"))
    p.add_argument("--machine", default="auto", help=_("auto (default), pc, q35 or microvm"))
    p.add_argument("--cpu", help=_("CPU model to emulate, e.g. qemu64, Skylake-Client (default: QEMU's)"))
    p.add_argument("--command", help=_("a shell command the guest runs after its report"))
    p.add_argument("--kernel", type=Path, help=_("boot this kernel instead of the cached one"))
    p.add_argument("--timeout", type=seconds, default=60.0, metavar="S", help=_("give up after S seconds (60)"))
    p.add_argument("--console", action="store_true", help=_("stream the guest's console while it boots"))
    p.add_argument("--json", action="store_true", help=_("print the result as JSON"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # never fetched here: a boot works offline, from the cache `labkit image build` (setup) made
    image = images.tiny_guest(args.kernel, args.command, fetch=False, progress=not args.json)
    stream = (lambda text: print(text, end="", file=sys.stderr, flush=True)) if args.console else None
    result = asyncio.run(qemu.boot(image, accel=args.accel, machine=args.machine, cpu=args.cpu,
                                   memory_mib=args.memory, vcpus=args.vcpus, timeout=args.timeout,
                                   on_output=stream))
    r, t = result.report, result.times
    status = _command_status(r.command_status) if args.command is not None else 0
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return status
    print(f"accel      {result.accel.name}: {result.accel.reason}")
    print(f"machine    {result.config.machine}, {result.config.vcpus} vCPU, {result.config.memory_mib} MiB, "
          f"cpu {result.config.cpu or 'QEMU default'}")
    for note in result.notes:
        print(f"           - {note}")
    print(f"guest      Linux {r.kernel_release}, {r.cpus} CPU, {r.memory_mib} MiB usable")
    print(f"guest cpu  {r.cpu_vendor} {r.cpu_model}; hypervisor flag: {'yes' if r.hypervisor_flag else 'no'}, "
          f"CPUID says: {r.hypervisor or 'none'}; VT-x/AMD-V visible: {r.hardware_virtualization or 'no'}")
    print(f"timings    first console byte {_s(t.first_output_s)}, userspace {_s(t.userspace_s)}, "
          f"powered off {_s(t.poweroff_s)} (since launch)")
    print(f"           the guest's clock at /init: {t.guest_uptime_s:.2f} s; before the kernel's clock "
          f"started: {t.before_kernel_s:.2f} s")
    if r.command_output is not None:
        print(f"command    exit status {r.command_status}:\n{r.command_output.rstrip()}")
    return status


def _command_status(status: int | None) -> int:
    """The exit status ``labkit boot`` passes on from the guest's command, as ``labkit nested run`` does.

    0 to 255 pass through.  Unknown (the guest printed none) is not success: 1.
    """
    return status if status is not None and 0 <= status <= 255 else 1


def _s(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "—"
