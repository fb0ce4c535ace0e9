"""Notebook 06's pieces: the learner's e820 map and UART transmit handler (checkers, solutions, the VMM's hooks
for them), and what the notebook reads from its one boot (the guest's dmesg, /proc/interrupts, /proc/ioports).
The boot itself runs inside the emulated AMD-V machine (tests/nested/test_own_vmm.py, notebook 06 in nbval)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from conftest import needs_kvm
from labkit import exercises, formats, vmm
from labkit.exercises import vmm as ex
from labkit.nested import own_vmm
from labkit.vmm import bootparam, zeropage
from labkit.vmm.uart import COM1, IER, IER_THRI, THR, Uart

CHECK = exercises.all_exercises()  # the bare checkers: every hint, no attempt counted
TOP = Path(__file__).resolve().parent.parent


def _solution(name: str, variable: str) -> object:
    """Run as a file (our own reference file), so its functions' source is readable, as in a notebook's cell."""
    return runpy.run_path(str(TOP / "solutions" / f"{name}.py"))[variable]


def _starter_transmit() -> object:
    namespace: dict = {}
    exec(ex.TRANSMIT_STARTER, namespace)  # the template cell: a function that does nothing
    return namespace["my_transmit"]


def test_the_e820_solution_passes_and_the_template_does_not() -> None:
    assert CHECK["vmm-e820"](_solution("vmm-e820", "my_e820")).solved
    template = CHECK["vmm-e820"]([])
    assert not template.solved and len(template.hints) == 3
    size = ex.memory_mib() << 20
    assert not any(f"{size - 0x100000:#x}" in h or "0x60400" in h for h in template.hints), "a hint hands out a row"


@pytest.mark.parametrize(("rows", "message"), [
    ([(0, 4 << 30, 1)], "beyond"),  # more RAM than the VM has
    ([(0, ex.memory_mib() << 20, 1)], "legacy hole"),  # RAM in the VGA window and the BIOS
    ([(0, 0x9FC00, 1), (0x100000, 32 << 20, 1)], "is not in one usable row"),  # the kernel's image above 33 MiB
    ([(0, 0x9FC00, 1), (0x9FC00, 0x60400, 2), (0x100000, 80 << 20, 1)], "initramfs"),  # the top of RAM left out
    ([(0x100000, 8 << 20, 1), (0, 0x9FC00, 1)], "not sorted"),
    ([(0, 0x9FC00, 1), (0x9FC00, 0x60400, 7)], "neither 1"),
    ([(0, 0x9FC00)], "list of (address, size, type) rows"),
])
def test_e820_maps_the_kernel_could_not_use_are_refused(rows: list, message: str) -> None:
    feedback = CHECK["vmm-e820"](rows)
    assert not feedback.solved and message in feedback.message, feedback


def test_the_transmit_solution_passes_and_the_template_does_not() -> None:
    assert CHECK["vmm-transmit"](_solution("vmm-transmit", "my_transmit")).solved
    template = CHECK["vmm-transmit"](_starter_transmit())
    assert not template.solved and "the console got 0" in template.message and len(template.hints) == 3


def test_a_handler_without_the_thre_interrupt_stalls_the_tty_after_16_bytes() -> None:
    def emit_only(uart: Uart, value: int) -> None:
        uart.emit(value)

    def irq_without_iir(uart: Uart, value: int) -> None:  # IRQ 4 comes, but IIR names no reason
        uart.emit(value)
        if uart.ier & IER_THRI:
            uart.raise_irq()

    for handler in (emit_only, irq_without_iir):
        feedback = CHECK["vmm-transmit"](handler)
        assert not feedback.solved and f"sent {ex.TX_LOAD} of {len(ex.TTY_LINE)} bytes" in feedback.message


def test_a_handler_that_raises_or_is_not_a_function_gets_feedback() -> None:
    def broken(uart: Uart, value: int) -> None:
        raise ZeroDivisionError("on purpose")

    assert "ZeroDivisionError: on purpose" in CHECK["vmm-transmit"](broken).message
    assert "got a NoneType" in CHECK["vmm-transmit"](None).message


def test_the_boot_takes_the_learners_pieces_only_where_their_checks_pass() -> None:
    solved, notes = ex.boot_pieces(_solution("vmm-e820", "my_e820"), _solution("vmm-transmit", "my_transmit"))
    assert solved.memory_mib == ex.memory_mib() and solved.e820 is not None and solved.transmit is not None
    assert notes == ["e820 map: yours", "THR handler: yours"]
    template, notes = ex.boot_pieces([], _starter_transmit())
    assert (template.e820, template.transmit) == (None, None) and all("VMM's own" in n for n in notes)
    assert own_vmm.map_used(template) == tuple((e.addr, e.size, e.type)
                                              for e in zeropage.e820_map(ex.memory_mib() << 20))


def test_the_learners_handler_travels_into_l1_as_source_and_works_there() -> None:
    solution = _solution("vmm-transmit", "my_transmit")
    spec = json.loads(json.dumps(own_vmm.Pieces(128, None, solution).spec()))  # as it crosses the command line
    assert spec["transmit_name"] == "my_transmit" and spec["e820"] is None
    rebuilt = own_vmm.learners_transmit(spec["transmit_source"], spec["transmit_name"])
    assert CHECK["vmm-transmit"](rebuilt).solved


def test_a_handler_without_readable_source_is_a_clear_error() -> None:
    with pytest.raises(own_vmm.InvalidPieceError, match="cannot be read"):
        own_vmm.Pieces(128, None, print).spec()


@needs_kvm
def test_the_vm_writes_the_given_map_and_sends_thr_writes_through_the_given_handler(tmp_path: Path) -> None:
    seen: list[int] = []

    def mine(uart: Uart, value: int) -> None:
        seen.append(value)
        uart.emit(value)

    path = tmp_path / "tiny-kernel"  # mov dx,0x3f8; 'h' and 'i' out; ud2: a triple fault
    path.write_bytes(formats.static_elf(bytes.fromhex("66baf803" "b068" "ee" "b069" "ee" "0f0b"),
                                        0x200000 + formats.ELF_HEADERS))
    rows = (zeropage.E820Entry(0, 0x9FC00, 1), zeropage.E820Entry(0x100000, 63 << 20, 1))
    with vmm.LinuxVm(vmm.read_kernel(path), b"initrd", "", 64 << 20, e820=rows, transmit=mine,
                     first_exits=2) as vm:
        page = bootparam.boot_params.from_buffer_copy(vm.vm.memory.read(zeropage.ZERO_PAGE, 4096))
        end = vm.run(timeout=60)
    assert [(e.addr, e.size, e.type) for e in page.e820_table[:page.e820_entries]] == \
        [(e.addr, e.size, e.type) for e in rows]
    assert seen == [ord("h"), ord("i")] and vm.uart.text == "hi" and end.name == "KVM_EXIT_SHUTDOWN"
    assert [line.split(" s  ", 1)[1] for line in vm.first_exit_log] == \
        [f"KVM_EXIT_IO: out 0x68 'h' to port {COM1:#x}", f"KVM_EXIT_IO: out 0x69 'i' to port {COM1:#x}"]


def test_the_default_transmit_sends_and_interrupts_as_the_8250_does() -> None:
    raised: list[int] = []
    uart = Uart(lambda: raised.append(1))
    uart.out(COM1 + IER, bytes((IER_THRI,)))  # enabling THRI with THR empty interrupts at once
    uart.out(COM1 + THR, b"x")
    assert uart.text == "x" and len(raised) == uart.interrupts == 2


GUEST_SAID = """\
[    0.000000] Command line: console=ttyS0 quiet reboot=t
[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
[    0.000000] BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved
[    0.000000] BIOS-e820: [mem 0x00000000000d0000-0x00000000000effff] ACPI NVS
  4:         35    XT-PIC      ttyS0
0000-001f : dma1
0070-0071 : rtc_cmos
  0070-0071 : rtc0
03f8-03ff : serial
"""


def test_what_the_notebook_reads_from_the_guests_command_output() -> None:
    assert own_vmm.e820_from_dmesg(GUEST_SAID) == ((0, 0x9FC00, 1), (0x9FC00, 0x60400, 2), (0xD0000, 0x20000, 0))
    assert own_vmm.serial_interrupts(GUEST_SAID) == 35  # not fooled by console=ttyS0 on the command line
    assert own_vmm.serial_interrupts("  4:  0  XT-PIC  ttyS0\n") == 0
    assert own_vmm.claimed_ports(GUEST_SAID) == 3  # top-level ranges only


def test_the_answer_cells_hold_the_checked_templates() -> None:
    cells = json.loads((TOP / "notebooks" / "06_own_vmm.ipynb").read_text())["cells"]

    def answer(name: str) -> str:
        return "".join(next(c for c in cells if f"exercise:{name}" in c["metadata"].get("tags", []))["source"])

    assert answer("vmm-transmit").strip() == ex.TRANSMIT_STARTER.strip()
    assert answer("vmm-e820").strip() == ex.E820_STARTER
