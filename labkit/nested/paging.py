"""Notebook 04b's shadow vs nested paging: one emulated AMD-V machine, ``kvm_amd`` with ``npt=1``, then ``npt=0``.

Whether KVM uses nested paging is a parameter of ``kvm_amd`` (``npt``), read
when the module loads.  This host's own KVM is not ours to reload (every VM on
it would go), and a PVM host has no nested paging at all; inside L1 (``labkit
nested``) KVM is ours alone.  One L1 boot runs :mod:`labkit.kvm.npt` there:
for each mode it reloads ``kvm_amd`` and runs the same raw KVM guest as L2
(:mod:`labkit.kvm.remap`: many small address spaces, built, loaded and
touched).  The guest is assembled here on the host and handed in: binutils
under TCG takes seconds per program.
"""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

from labkit import images
from labkit.errors import AccessDeniedError, MissingToolError
from labkit.kvm import npt, remap
from labkit.nested import modules
from labkit.nested.errors import CannotRunHereError, NestedError
from labkit.nested.machine import MIN_MEMORY_MIB, NestedResult, run


@dataclass(frozen=True)
class PagingComparison:
    """The same guest under nested and under shadow paging in one L1 — or why L1 could not run (``ran`` False)."""

    ran: bool
    why_not: str  # '' when it ran
    l1: NestedResult | None
    nested: remap.RemapRun | None  # kvm_amd npt=1
    shadow: remap.RemapRun | None  # kvm_amd npt=0

    @property
    def slowdown(self) -> float:
        """How many times longer the guest took under shadow paging than under nested paging."""
        assert self.nested and self.shadow
        return self.shadow.seconds / self.nested.seconds

    def grown(self, counter: str) -> int:
        """How much more ``counter`` counted under shadow paging than under nested paging."""
        assert self.nested and self.shadow
        return self.shadow.counters.get(counter, 0) - self.nested.counters.get(counter, 0)

    def table(self) -> str:
        """Time and KVM's counters, the two modes side by side."""
        assert self.nested and self.shadow
        rows = [f"{'':20}{'npt=1 (nested)':>16}{'npt=0 (shadow)':>16}",
                f"{'guest time, s':20}{self.nested.seconds:>16.3f}{self.shadow.seconds:>16.3f}"]
        rows += [f"{name:20}{self.nested.counters.get(name, 0):>16,}{self.shadow.counters.get(name, 0):>16,}"
                 for name in remap.COUNTERS if name in self.nested.counters or name in self.shadow.counters]
        return "\n".join(rows)


async def compare(rounds: int = 200, pages: int = 64, on_line: Callable[[str], None] | None = None,
                  timeout: float = 300.0) -> PagingComparison:
    """Boot L1 once and run :mod:`labkit.kvm.remap`'s guest under ``npt=1`` and ``npt=0``; ``on_line`` gets the
    inner run's progress as it comes.  L1 is as small as it may be: the smallest memory, one vCPU (the guest
    has one; docs/developing.md tells of a 2-vCPU L1 that stalled on a loaded host)."""
    code = remap.program()
    out, err = bytearray(), bytearray()
    decoder = codecs.getincrementaldecoder("utf-8")("replace")  # serial chunks may split a character

    def progress(data: bytes) -> None:
        err.extend(data)
        if on_line and (text := decoder.decode(data)):
            on_line(text)

    argv = [sys.executable, "-m", "labkit.kvm.npt", "--modules",
            str(modules.kernel_modules(images.find_kernel(fetch=False, progress=False))),
            "--rounds", str(rounds), "--pages", str(pages),
            "--code", json.dumps({"image": code.image.hex(), "symbols": code.symbols})]
    try:
        l1 = await run(argv, memory_mib=MIN_MEMORY_MIB, vcpus=1, timeout=timeout, stdout=out.extend,
                       stderr=progress)
    except (CannotRunHereError, MissingToolError, AccessDeniedError) as exc:
        # this host cannot run L1: say why (any other error means L1 started and broke: a bug to see)
        return PagingComparison(False, f"{exc.what} (fix: {exc.fix})" if exc.fix else exc.what, None, None, None)
    found = {row["npt"]: remap.RemapRun.from_json(row["run"]) for row in
             (json.loads(line[len(npt.MARK):]) for line in out.decode().splitlines() if line.startswith(npt.MARK))}
    if l1.status != 0 or set(found) != set(npt.MODES):
        raise NestedError(f"the paging comparison inside L1 failed (status {l1.status}): "
                          f"{(out + err).decode(errors='replace')[-800:].strip() or 'no output'}",
                          "run it by hand: labkit nested run -- python -m labkit.kvm.npt --modules DIR")
    return PagingComparison(True, "", l1, found[True], found[False])
