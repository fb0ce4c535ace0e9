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
    print(_("accel      {name}: {reason}").format(name=result.accel.name, reason=result.accel.reason))
    print(_("machine    {machine}, {vcpus} vCPU, {memory} MiB, cpu {cpu}").format(
        machine=result.config.machine, vcpus=result.config.vcpus, memory=result.config.memory_mib,
        cpu=result.config.cpu or _("QEMU default")))
    for note in result.notes:
        print(f"           - {note}")
    print(_("guest      Linux {release}, {cpus} CPU, {memory} MiB usable").format(
        release=r.kernel_release, cpus=r.cpus, memory=r.memory_mib))
    print(_("guest cpu  {vendor} {model}; hypervisor flag: {flag}, CPUID says: {hypervisor}; VT-x/AMD-V visible: "
            "{extension}").format(vendor=r.cpu_vendor, model=r.cpu_model,
                                  flag=_("yes") if r.hypervisor_flag else _("no"), hypervisor=r.hypervisor or _("none"),
                                  extension=r.hardware_virtualization or _("no")))
    print(_("timings    first console byte {first}, userspace {userspace}, powered off {off} (since launch)").format(
        first=_s(t.first_output_s), userspace=_s(t.userspace_s), off=_s(t.poweroff_s)))
    print("           " + _("the guest's clock at /init: {uptime:.2f} s; before the kernel's clock started: "
                            "{before:.2f} s").format(uptime=t.guest_uptime_s, before=t.before_kernel_s))
    if r.command_output is not None:
        print(_("command    exit status {status}:").format(status=r.command_status) + "\n" + r.command_output.rstrip())
    return status


def _command_status(status: int | None) -> int:
    """The exit status ``labkit boot`` passes on from the guest's command, as ``labkit nested run`` does.

    0 to 255 pass through.  Unknown (the guest printed none) is not success: 1.
    """
    return status if status is not None and 0 <= status <= 255 else 1


def _s(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "—"
