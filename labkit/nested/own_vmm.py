"""Notebook 06's one boot: labkit's VMM with the learner's pieces, then QEMU on the same guest, inside L1.

Where this host's KVM cannot run a Linux kernel (PVM: ring 0 emulated), the
boot runs inside the emulated AMD-V machine (:mod:`labkit.nested`), once for
the whole notebook: in one L1, ``python -m labkit.nested.own_vmm SPEC`` boots the
tiny guest with labkit's VMM — the learner's e820 map and UART transmit
handler in place — streaming its console out as it comes, then (unless
told not to) boots the same kernel and initramfs with QEMU under the same
KVM, and prints one JSON line with both.  The guest runs the same command
under both VMMs: the kernel's own view of its memory map and command line
(``dmesg``), and the I/O ports its drivers claimed (``/proc/ioports``).

The learner's transmit handler travels as its source text (the notebook's
function, :func:`inspect.getsource`), run in L1 with the names of
:mod:`labkit.vmm.uart`; the map travels as numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit import host, i18n, nested, qemu
from labkit.errors import AccessDeniedError, LabkitError, MissingToolError
from labkit.i18n import _
from labkit.i18n import noop as N_
from labkit.nested.errors import CannotRunHereError, NestedError
from labkit.vmm import uart as uart_module
from labkit.vmm.linux import boot
from labkit.vmm.zeropage import E820Entry, e820_map

#: What the guest runs after its report, under both VMMs: the kernel's view of the machine it was given.
GUEST_COMMAND = ("dmesg | grep -E 'BIOS-e820|Command line|RAMDISK'; grep ttyS /proc/interrupts; "
                 "cat /proc/ioports")
#: The first exits kept, described, for the notebook to show.
FIRST_EXITS = 12
MARK = "LABKIT-VMM-INSIDE "
VMM_SOURCES = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Pieces:
    """The learner's pieces for the boot; None keeps the VMM's own."""

    memory_mib: int
    e820: tuple[E820Entry, ...] | None = None
    transmit: uart_module.Transmit | None = None

    def spec(self) -> dict:
        """The pieces as JSON: the map as numbers, the handler as its source and name."""
        source = name = None
        if self.transmit is not None:
            source, name = _source_of(self.transmit), self.transmit.__name__
        return {"memory_mib": self.memory_mib, "transmit_source": source, "transmit_name": name,
                "e820": None if self.e820 is None else [[e.addr, e.size, e.type] for e in self.e820]}


def _source_of(function: Callable) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError) as exc:
        raise InvalidPieceError(f"the source of {function!r} cannot be read ({exc}): it must travel into the "
                                "emulated machine as text", "define it with `def` in a notebook cell") from None


class InvalidPieceError(LabkitError):
    """A learner's piece cannot be used for the boot."""


@dataclass(frozen=True)
class CapstoneRun:
    """What the one run measured — here, or inside L1 — or why L1 could not run here (``ran`` False)."""

    ran: bool
    why_not: str
    l1: nested.NestedResult | None  # None: the boot ran on this host
    own: dict | None  # labkit's boot: LinuxBoot.to_dict(), plus the guest command's output
    qemu: dict | None  # QEMU's boot of the same guest: its machine, times, the command's output (None: not run)
    e820: tuple[tuple[int, int, int], ...] = ()  # the map the VMM wrote: the learner's or its own

    @property
    def where(self) -> str:
        if self.l1 is None:
            return i18n.Phrase(N_("this host"))
        return i18n.Phrase(N_("inside the emulated AMD-V machine (L1 ready in {ready_s:.1f} s, the run took "
                              "{command_s:.1f} s)"), ready_s=self.l1.ready_s, command_s=self.l1.command_s)


def map_used(pieces: Pieces) -> tuple[tuple[int, int, int], ...]:
    """The e820 rows the VMM writes for ``pieces``."""
    rows = pieces.e820 if pieces.e820 is not None else e820_map(pieces.memory_mib << 20)
    return tuple((e.addr, e.size, e.type) for e in rows)


async def run_in_vm(pieces: Pieces, report: host.HostReport, *, compare_qemu: bool = True,
                    on_console: Callable[[str], None] | None = None) -> CapstoneRun:
    """Notebook 06's boot: on this host where its KVM boots Linux, else once inside L1 (:func:`run_inside`)."""
    if report.verdict.boots_linux and report.verdict.usable:
        found = inside(pieces.spec(), compare_qemu, on_console or _to_stderr)
        return CapstoneRun(True, "", None, found["own"], found["qemu"], map_used(pieces))
    run = await run_inside(pieces, compare_qemu=compare_qemu, on_console=on_console)
    if not run.ran:
        raise NestedError(f"this host's KVM cannot boot Linux, and the emulated AMD-V machine cannot run here: "
                          f"{run.why_not}", "run this notebook on a host with VT-x/AMD-V")
    return CapstoneRun(True, "", run.l1, run.own, run.qemu, map_used(pieces))


def e820_entries(rows: Sequence[Sequence[int]]) -> tuple[E820Entry, ...]:
    """(addr, size, type) rows as e820 entries."""
    return tuple(E820Entry(int(a), int(s), int(t)) for a, s, t in rows)


def learners_transmit(source: str, name: str) -> uart_module.Transmit:
    """The learner's handler, defined from its source with :mod:`labkit.vmm.uart`'s names at hand."""
    namespace = {k: v for k, v in vars(uart_module).items() if not k.startswith("_")}
    exec(compile(source, "<learner's transmit>", "exec"), namespace)  # the learner's own notebook code
    return namespace[name]


def _to_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def inside(spec: dict, compare_qemu: bool, console: Callable[[str], None] = _to_stderr) -> dict:
    """labkit's boot with the pieces, then QEMU's (in L1: the console streams to stderr)."""

    transmit: uart_module.Transmit = uart_module.transmit
    if spec["transmit_source"]:
        transmit = learners_transmit(spec["transmit_source"], spec["transmit_name"])
    e820 = None if spec["e820"] is None else e820_entries(spec["e820"])
    own = boot(command=GUEST_COMMAND, memory_mib=spec["memory_mib"], timeout=300, on_output=console,
               e820=e820, transmit=transmit, first_exits=FIRST_EXITS, check_host=False)
    result: dict = {"own": own.to_dict(), "qemu": None}
    result["own"]["command_output"] = own.report.command_output
    if compare_qemu:
        other = asyncio.run(qemu.boot(accel="kvm", command=GUEST_COMMAND, memory_mib=spec["memory_mib"],
                                      timeout=300))
        binary = qemu.qemu_binary()
        result["qemu"] = {**other.to_dict(), "command_output": other.report.command_output,
                          "binary": binary, "binary_bytes": os.stat(binary).st_size}
    return result


async def run_inside(pieces: Pieces, *, compare_qemu: bool = True,
                     on_console: Callable[[str], None] | None = None, timeout: float = 900.0) -> CapstoneRun:
    """Boot L1 once and run :func:`inside` there with ``pieces``; ``on_console`` gets the guest's console."""
    out, err = bytearray(), bytearray()

    def console(data: bytes) -> None:
        err.extend(data)
        if on_console:
            on_console(data.decode("utf-8", "replace"))

    # the pieces travel on the command line (L1 hides this host's lab run dirs, so not as a file in one)
    # and in the notebook's language: the first exits are described there
    argv = [sys.executable, "-m", "labkit.nested.own_vmm", json.dumps(pieces.spec()), "--lang", i18n.current()] + \
        ([] if compare_qemu else ["--no-qemu"])
    try:
        l1 = await nested.run(argv, timeout=timeout, stdout=out.extend, stderr=console)
    except (CannotRunHereError, MissingToolError, AccessDeniedError) as exc:
        return CapstoneRun(False, f"{exc.what} (fix: {exc.fix})" if exc.fix else exc.what, None, None, None)
    lines = [line for line in out.decode(errors="replace").splitlines() if line.startswith(MARK)]
    if l1.status != 0 or not lines:
        raise NestedError(f"the boot inside L1 failed (status {l1.status}): "
                          f"{(out + err).decode(errors='replace')[-1500:].strip() or 'no output'}",
                          "run it by hand: labkit nested run -- labkit kvm linux --console")
    found = json.loads(lines[-1][len(MARK):])
    return CapstoneRun(True, "", l1, found["own"], found["qemu"])


_E820_LINE = re.compile(r"BIOS-e820: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\] (\w+)")
_E820_TYPES = {"usable": 1, "reserved": 2}


def e820_from_dmesg(text: str) -> tuple[tuple[int, int, int], ...]:
    """The kernel's ``BIOS-e820: [mem START-END] TYPE`` lines as (address, size, type) rows (END is inclusive)."""
    return tuple((int(a, 16), int(b, 16) + 1 - int(a, 16), _E820_TYPES.get(t, 0))
                 for a, b, t in _E820_LINE.findall(text))


_IRQ_LINE = re.compile(r"^\s*\d+:((?:\s+\d+)+)\s.*\bttyS\d", re.MULTILINE)


def serial_interrupts(text: str) -> int:
    """The interrupts ``/proc/interrupts`` counted for a ``ttyS`` port (all CPUs), in the guest command's output."""
    return sum(int(n) for found in _IRQ_LINE.findall(text) for n in found.split())


def claimed_ports(text: str) -> int:
    """Top-level ranges in the guest's ``/proc/ioports`` (lines like ``03f8-03ff : serial``)."""
    return sum(1 for line in text.splitlines() if re.match(r"[0-9a-f]{4}-[0-9a-f]{4} : ", line))


@dataclass(frozen=True)
class Comparison:
    """labkit's VMM and QEMU on the same guest, from one run's measurements."""

    own_lines: int
    qemu_binary_mib: float | None
    own_e820_rows: int
    qemu_e820_rows: int
    own_ports: int
    qemu_ports: int
    own_exits: dict[str, int]
    own_userspace_s: float
    qemu_userspace_s: float | None
    qemu_machine: str

    def text(self) -> str:
        """The table, in the language of the moment (columns padded to their width on a terminal)."""
        def q(value: object) -> str:
            return "—" if value is None else str(value)
        machine = _("not run") if self.qemu_machine == "not run" else self.qemu_machine
        rows = [("", _("labkit's VMM"), f"QEMU ({machine})"),
                (_("code"), _("{lines} lines of Python (labkit/vmm)").format(lines=self.own_lines),
                 _("a {mib} MiB binary").format(mib=q(self.qemu_binary_mib)) if self.qemu_binary_mib else "—"),
                (_("e820 rows the kernel read"), str(self.own_e820_rows), q(self.qemu_e820_rows or None)),
                (_("port ranges its drivers claimed"), str(self.own_ports), q(self.qemu_ports or None)),
                (_("exits by reason"), exit_counts(self.own_exits, short=True),
                 _("not counted (KVM's counters for QEMU's vCPU are not read)")),
                (_("launch → /init's report"), f"{self.own_userspace_s:.2f} s",
                 "—" if self.qemu_userspace_s is None else f"{self.qemu_userspace_s:.2f} s")]
        width = max(_width(r[0]) for r in rows)
        own_width = max(_width(r[1]) for r in rows)
        return "\n".join(f"{_pad(a, width)}  {_pad(b, own_width)}  {c}" for a, b, c in rows)


def exit_counts(exits: dict[str, int], *, short: bool = False) -> str:
    """``{"KVM_EXIT_IO": 2434, …}`` as ``KVM_EXIT_IO 2434, …`` (``short``: ``IO 2434, …``)."""
    return ", ".join(f"{k.removeprefix('KVM_EXIT_') if short else k} {v}" for k, v in exits.items())


def _width(text: str) -> int:
    """Columns ``text`` takes on a terminal: Hangul takes two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def compare(run: CapstoneRun) -> Comparison:
    """The comparison table's numbers, all from ``run`` (and the size of labkit's sources)."""
    assert run.own is not None
    own_out = run.own["command_output"] or ""
    other = run.qemu or {}
    qemu_out = other.get("command_output") or ""
    return Comparison(
        own_lines=source_lines(), qemu_binary_mib=round(other["binary_bytes"] / 2**20, 1) if other else None,
        own_e820_rows=len(e820_from_dmesg(own_out)), qemu_e820_rows=len(e820_from_dmesg(qemu_out)),
        own_ports=claimed_ports(own_out), qemu_ports=claimed_ports(qemu_out), own_exits=dict(run.own["exits"]),
        own_userspace_s=run.own["times"]["userspace_s"],
        qemu_userspace_s=other["times"]["userspace_s"] if other else None,
        qemu_machine=other.get("machine", "not run"))


def source_lines(folder: Path = VMM_SOURCES) -> int:
    """Lines of Python in labkit's VMM (``labkit/vmm``), blank lines and comments left out."""
    count = 0
    for path in sorted(folder.glob("*.py")):
        count += sum(1 for line in path.read_text().splitlines()
                     if line.strip() and not line.strip().startswith("#"))
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="the pieces, as JSON (Pieces.spec)")
    parser.add_argument("--no-qemu", action="store_true")
    parser.add_argument("--lang", default=None, help="the language of the exits' descriptions (labkit.i18n.use)")
    args = parser.parse_args(argv)
    i18n.use(args.lang)
    try:
        result = inside(json.loads(args.spec), not args.no_qemu)
    except LabkitError as exc:
        print(f"labkit: error: {exc.what}\n  fix: {exc.fix}", file=sys.stderr)
        return 2
    print(MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
