"""Notebook 04's "KVM inside an emulator": the tiny guest booted under KVM inside the emulated AMD-V machine.

One L1 boot runs ``labkit boot --accel kvm --console --json``: the guest's
console streams out (for a live view) and its JSON report comes back, so
the notebook can put three timings side by side — the guest on this host,
L1 getting ready under TCG, the guest (L2) under KVM on the emulated SVM.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

from labkit.errors import AccessDeniedError, MissingToolError
from labkit.nested.errors import CannotRunHereError, NestedError
from labkit.nested.machine import DEFAULT_MEMORY_MIB, NestedResult, run


@dataclass(frozen=True)
class NestedBoot:
    """The tiny guest booted inside L1 — or why L1 could not run on this host (``ran`` False)."""

    ran: bool
    why_not: str  # '' when it ran: the error that kept L1 from starting (no virtiofsd, not root, memory…)
    l1: NestedResult | None
    accel: str | None  # the accelerator the guest (L2) got inside L1
    hypervisor: str | None  # the hypervisor L2's CPU names (CPUID)
    l2_userspace_s: float | None  # L2's QEMU launch → its /init, timed inside L1


async def boot_under_kvm_inside(on_console: Callable[[str], None] | None = None,
                                memory_mib: int = DEFAULT_MEMORY_MIB, timeout: float = 600.0) -> NestedBoot:
    """Boot L1 and, in it, the tiny guest with ``--accel kvm``; ``on_console`` gets L2's console text."""
    out, err = bytearray(), bytearray()

    def console(data: bytes) -> None:
        err.extend(data)
        if on_console:
            on_console(data.decode("utf-8", "replace"))

    argv = [sys.executable, "-m", "labkit", "boot", "--accel", "kvm", "--console", "--json"]
    try:
        l1 = await run(argv, memory_mib=memory_mib, timeout=timeout, stdout=out.extend, stderr=console)
    except (CannotRunHereError, MissingToolError, AccessDeniedError) as exc:
        # this host cannot run L1: say why (any other error means L1 started and broke: a bug to see)
        return NestedBoot(False, f"{exc.what} (fix: {exc.fix})" if exc.fix else exc.what, None, None, None, None)
    try:
        report = json.loads(out.decode())
    except ValueError:
        report = None
    if l1.status != 0 or report is None:
        raise NestedError(f"`labkit boot --accel kvm` inside L1 failed (status {l1.status}): "
                          f"{(out + err).decode(errors='replace')[-800:].strip() or 'no output'}",
                          "run it by hand: labkit nested run -- labkit boot --accel kvm --console")
    return NestedBoot(True, "", l1, report["accel"]["name"], report["report"]["hypervisor"],
                      report["times"]["userspace_s"])
