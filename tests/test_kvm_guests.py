"""Real guests on /dev/kvm in every mode, and every way a guest can go wrong."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from conftest import needs_kvm
from labkit.errors import InvalidOptionError
from labkit.kvm import guests, modes
from labkit.kvm.errors import GuestBudgetExceededError, GuestInternalError, GuestShutdownError, UnhandledAccessError
from labkit.kvm.exits import HltExit, IoExit, MmioExit
from labkit.kvm.machine import Machine
from labkit.kvm.system import Kvm, has_feature

pytestmark = needs_kvm


def build(body: str, mode: str):
    return guests.build(".intel_syntax noprefix\nstart:\n" + body, mode)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("mode, bits, text", [
    ("real", 16, "Hello from 16-bit real mode!\n"),
    ("protected", 32, "Hello from 32-bit protected mode!\n"),
    ("long", 64, "Hello from 64-bit long mode!\n"),
])
def test_hello_in_each_mode(mode: str, bits: int, text: str) -> None:
    with Machine(guests.HELLO[mode]) as m:
        steps = []
        while not m.finished:
            steps.append(m.step())
    # the exit sequence: one port write per character, each carrying that character, then HLT
    assert [type(s.exit) for s in steps] == [IoExit] * len(text) + [HltExit]
    assert bytes(s.exit.value for s in steps[:-1]).decode() == text
    assert {(s.exit.port, s.exit.direction) for s in steps[:-1]} == {(0x3F8, "out")}
    assert steps[-1].serial == text and m.exits == {"KVM_EXIT_IO": len(text), "KVM_EXIT_HLT": 1}
    last = steps[-1]
    assert last.special.mode == mode and last.special.bits == bits
    assert last.registers.rdx & 0xFFFF == 0x3F8 and last.registers.rax & 0xFF == 0  # al: the final 0 byte
    assert last.registers.rip == m.program.symbol("done") + 1  # just after the hlt
    assert any(line.at_rip for line in last.code) and "hlt" in [line.text for line in last.code]


@pytest.mark.parametrize("mode", modes.MODES)
def test_run_gives_the_same_result_as_stepping(mode: str) -> None:
    with Machine(guests.HELLO[mode]) as m:
        result = m.run()
    assert result.serial.startswith("Hello from") and result.stopped_by == "KVM_EXIT_HLT"
    assert result.total_exits == len(result.serial) + 1


def test_protected_mode_state() -> None:
    with Machine("hello_protected") as m:
        special = m.special()
        assert (special.cs.selector, special.ds.selector, special.cs.db, special.ring) == (0x08, 0x10, 1, 0)
        assert special.gdt.base == modes.GDT_ADDR
        # the GDT in guest memory is what the VMM loaded into CS, Accessed bit (type bit 0) pre-set
        assert m.memory.read_u64(modes.GDT_ADDR + 0x08) == modes.GDT[0x08]
        assert special.cs.type & 1 and not special.paging


@pytest.mark.parametrize("pages", ["2M", "4K"])
def test_long_mode_page_tables(pages: str) -> None:
    with Machine("hello_long", pages=pages) as m:
        special = m.special()
        assert special.paging and special.cr3 == modes.PML4_ADDR and special.cs.l == 1
        # identity map: virtual == physical, through KVM's own walk of the guest's tables
        for address in (0x8000, 0x1F_F000, 0x1000_0000, 0x3FFF_F000):
            assert m.vcpu.translate(address) == address
        assert m.vcpu.translate(0x4000_0000) is None  # beyond the first GiB: not mapped
        pd0 = m.memory.read_u64(modes.PD_ADDR)
        assert bool(pd0 & modes.PTE_HUGE) is (pages == "2M")
        assert m.run().serial == "Hello from 64-bit long mode!\n"


def test_one_gib_pages_follow_the_hosts_cpuid() -> None:
    with Kvm() as kvm:
        offered = has_feature(kvm.supported_cpuid(), "pdpe1gb")
    if offered:
        with Machine("hello_long", pages="1G") as m:
            assert m.run().serial == "Hello from 64-bit long mode!\n"
    else:
        with pytest.raises(InvalidOptionError, match="pdpe1gb"):
            Machine("hello_long", pages="1G")


def test_mode_switch_inside_the_guest() -> None:
    with Machine("mode_switch") as m:
        assert m.special().mode == "real"
        modes_seen = []
        while not m.finished:
            step = m.step()
            if not modes_seen or modes_seen[-1] != step.special.describe():
                modes_seen.append(step.special.describe())
    assert modes_seen == ["16-bit real mode, paging off", "32-bit protected mode, ring 0, paging off",
                          "64-bit long mode, ring 0, paging on"]
    assert step.serial.splitlines() == ["real mode: 16-bit, no protection",
                                        "protected mode: 32-bit, segments from the GDT",
                                        "long mode: 64-bit, paging on"]


def test_drop_to_ring3_with_iretq() -> None:
    with Machine("ring3") as m:
        result = m.run()
    assert result.serial == "ring 0: kernel mode\nring 3: user mode, entered with iretq\n"
    assert result.stopped_by == "power off (code 0)"
    assert result.special.ring == 3 and result.special.cs.selector == modes.USER_CS
    assert result.special.ss.selector == modes.USER_DS


def test_mmio_exits_and_host_supplied_reads() -> None:
    with Machine("mmio_counter") as m:
        steps = [m.step() for _ in range(4)]
    assert [type(s.exit) for s in steps] == [MmioExit, MmioExit, MmioExit, HltExit]
    write, read1, read2 = (s.exit for s in steps[:3])
    assert (write.address, write.is_write, write.value, write.size) == (0x1000_0000, True, 41, 4)
    assert (read1.is_write, read1.size, read2.address) == (False, 4, 0x1000_0000)
    regs = steps[-1].registers
    assert (regs.rax, regs.rcx) == (41, 42)  # the values the VMM answered
    assert m.counter.reads == 2 and m.counter.writes == 1
    assert m.exits == {"KVM_EXIT_MMIO": 3, "KVM_EXIT_HLT": 1}  # the RAM store made no exit


def test_port_in_gets_the_devices_answer() -> None:
    with Machine(build("mov dx, SERIAL_PORT + 5\n in al, dx\n hlt", "real"), "real") as m:
        step = m.step()
        assert step.exit.direction == "in" and step.exit.port == 0x3FD
        m.step()
        assert m.registers().rax & 0xFF == 0x60  # line status: transmitter empty


# --------------------------------------------------------------------------- error paths


def test_triple_fault_raises_shutdown_with_the_dump() -> None:
    with Machine(build("ud2", "long"), "long") as m:
        with pytest.raises(GuestShutdownError) as info:
            m.run()
        with pytest.raises(InvalidOptionError, match="has stopped .GuestShutdownError"):
            m.run()  # a crashed guest stays crashed
    err = info.value
    assert "KVM_EXIT_SHUTDOWN" in err.what and "→ 0x08000: ud2" in err.dump
    assert err.registers.rip == 0x8000 and "64-bit long mode" in err.dump and "rip=" in str(err)


def test_page_fault_outside_the_identity_map_is_a_triple_fault() -> None:
    with Machine(build("mov rax, [0x40000000]\n hlt", "long"), "long") as m:
        with pytest.raises(GuestShutdownError):
            m.run()


def test_time_budget_stops_a_spinning_ring0_guest() -> None:
    with Machine(build("jmp start", "long"), "long") as m:
        started = time.monotonic()
        with pytest.raises(GuestBudgetExceededError, match="ran for 0.3 s"):
            m.run(timeout=0.3)
        assert time.monotonic() - started < 5


def test_time_budget_stops_a_guest_spinning_in_ring3() -> None:
    """Ring-3 code runs natively and never exits: only the kick gets the vCPU back."""
    with Machine(build(RING3_SPIN, "long"), "long") as m:
        with pytest.raises(GuestBudgetExceededError) as info:
            m.run(timeout=0.3)
        assert info.value.special.ring == 3
        with pytest.raises(GuestBudgetExceededError):  # and step() has the same guard
            m.step(timeout=0.2)


def test_exit_budget() -> None:
    with Machine(build("mov dx, SERIAL_PORT\nagain: out dx, al\n jmp again", "real"), "real") as m:
        with pytest.raises(GuestBudgetExceededError, match="100 exits"):
            m.run(max_exits=100)
        assert m.exits == {"KVM_EXIT_IO": 100}
        with pytest.raises(GuestBudgetExceededError):  # over budget is not crashed: it may go on
            m.run(max_exits=50)
        assert m.exits == {"KVM_EXIT_IO": 150}


def test_unclaimed_port() -> None:
    with Machine(build("out 0x99, al", "real"), "real") as m:
        with pytest.raises(UnhandledAccessError, match="I/O port 0x99"):
            m.run()


@pytest.mark.parametrize("address", [0x300000, 0x2000_0000])
def test_mmio_outside_slots_and_devices(address: int) -> None:
    with Machine(build(f"mov eax, [{address:#x}]\n hlt", "protected"), "protected") as m:
        with pytest.raises(UnhandledAccessError) as info:
            m.run()
    assert f"guest-physical {address:#x}" in info.value.what and "no RAM there" in info.value.what


def test_unemulated_instruction_or_triple_fault() -> None:
    """int3 in ring 0 with no IDT: hardware KVM delivers it and triple-faults; KVM's
    emulator (nested/PVM hosts) stops with an internal error.  Both are reported."""
    with Machine(build("int3", "long"), "long") as m:
        with pytest.raises((GuestInternalError, GuestShutdownError)) as info:
            m.run()
    if isinstance(info.value, GuestInternalError):
        assert "KVM_INTERNAL_ERROR_EMULATION" in info.value.what
    else:
        assert "KVM_EXIT_SHUTDOWN" in info.value.what


def test_keyboard_interrupt_leaves_the_machine_usable() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach only the main thread")
    # Ctrl-C as in a learner's shell, however pytest was started (a background job's SIGINT is ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with Machine(build("again: jmp again", "long"), "long") as m:
            timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            with pytest.raises(KeyboardInterrupt):
                m.run(timeout=60)  # the interrupt ends it in 0.2 s; the budget only bounds a broken one
            timer.join()
            assert m.registers().rip in (0x8000, 0x8002) and not m.vcpu.closed
    finally:
        signal.signal(signal.SIGINT, previous)


def test_nothing_leaks_after_guest_errors() -> None:
    before = open_fds()
    for body, mode in (("ud2", "long"), ("out 0x99, al", "real"), ("jmp start", "protected")):
        with pytest.raises((GuestShutdownError, UnhandledAccessError, GuestBudgetExceededError)):
            with Machine(build(body, mode), mode) as m:
                m.run(timeout=0.2)
        assert m.vcpu.closed and m.vm.closed and m.kvm.closed
        assert all(s.mapping.closed for s in m.memory.slots)
    assert open_fds() == before


def test_a_stopped_guest_cannot_run_again() -> None:
    with Machine("hello_real") as m:
        m.run()
        with pytest.raises(InvalidOptionError, match="has stopped"):
            m.step()


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "protected"}, "written for real mode"),
    ({"memory_size": 4096}, "too little"),
    ({"pages": "8K"}, "unknown page size"),
])
def test_bad_machine_options(kwargs: dict, message: str) -> None:
    before = open_fds()
    with pytest.raises(InvalidOptionError, match=message):
        Machine("hello_real", **kwargs)
    assert open_fds() == before


def test_a_program_needs_its_mode() -> None:
    with pytest.raises(InvalidOptionError, match="needs mode="):
        Machine(guests.guest("hello_real").build())
    with pytest.raises(InvalidOptionError, match="no guest program called"):
        Machine("hello_nowhere")


RING3_SPIN = ("push USER_DS\n push 0x7000\n push 0x3002\n push USER_CS\n lea rax, [rip + user]\n push rax\n"
              " iretq\nuser: jmp user")


def test_a_vcpu_thread_is_kicked_too() -> None:
    """The kick is a signal to the thread inside KVM_RUN, whichever thread that is."""
    errors: list[BaseException] = []

    def spin() -> None:
        with Machine(build(RING3_SPIN, "long"), "long") as m:
            try:
                m.run(timeout=0.3)
            except GuestBudgetExceededError as exc:
                errors.append(exc)

    thread = threading.Thread(target=spin)
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and len(errors) == 1 and errors[0].special.ring == 3


def test_time_budget_refuses_to_run_without_a_kick_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    import labkit.kvm.machine as machine_module

    monkeypatch.setattr(machine_module, "install_kick_handler", lambda: False)
    with Machine("hello_real") as m:
        with pytest.raises(InvalidOptionError, match="main thread"):
            m.run()
