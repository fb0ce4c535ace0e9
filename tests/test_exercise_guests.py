"""The guest-program exercises of notebooks 03 and 03b (and 03's debugging and device ones), judged on a real VM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import needs_kvm
from labkit import exercises
from labkit.exercises import guest_programs as g
from labkit.exercises import mmio_device, triple_fault
from labkit.kvm.devices import Device

CHECK = exercises.all_exercises()  # the bare checkers: every hint, no attempt counted

TOP = Path(__file__).resolve().parent.parent


def _solution(name: str, variable: str) -> str:
    namespace: dict = {}
    exec((TOP / "solutions" / f"{name}.py").read_text(), namespace)  # our own reference files
    return namespace[variable]


VALUE, ORDER = g.mmio_target()


@needs_kvm
def test_mmio_solution_passes_and_the_starter_does_not() -> None:
    assert exercises.check("kvm-mmio", _solution("kvm-mmio", "my_mmio_guest")).solved
    starter = CHECK["kvm-mmio"](g.MMIO_STARTER)
    assert not starter.solved and f"store of {VALUE}" in starter.message and starter.hints


def test_mmio_targets_vary_and_the_template_holds_none() -> None:
    targets = {exercises.target("kvm-mmio", g.MMIO_VALUES, user=f"s{i}", host="hub") for i in range(20)}
    assert len(targets) > 10 and str(VALUE) not in g.MMIO_STARTER and "[edi]" not in g.MMIO_STARTER


@needs_kvm
def test_mmio_wrong_order_is_measured_from_the_registers() -> None:
    loads = "".join(f"    mov {r}, [edi]\n" for r in reversed(ORDER))
    swapped = g.MMIO_STARTER.replace("    # your store and three loads here\n",
                                     f"    mov dword ptr [edi], {VALUE}\n{loads}")
    feedback = CHECK["kvm-mmio"](swapped)
    # what the VMM's answers left there: the last register loaded first
    assert not feedback.solved and f"{ORDER[-1]} = {VALUE}" in feedback.message, feedback


@needs_kvm
def test_ring3_solution_passes_and_ring0_printing_does_not() -> None:
    assert exercises.check("kvm-ring3", _solution("kvm-ring3", "my_ring3_guest")).solved
    starter = CHECK["kvm-ring3"](g.RING3_STARTER)
    assert not starter.solved and "from ring 0" in starter.message
    assert not any("0x3002" in h or "push USER_DS" in h for h in starter.hints), "a hint hands out the frame"


@needs_kvm
def test_a_guest_that_never_stops_or_does_not_assemble_gets_feedback_not_a_traceback() -> None:
    loop = g.check_mmio(".intel_syntax noprefix\nstart:\n    mov edi, MMIO_COUNTER\nagain:\n    mov eax, [edi]\n"
                        "    jmp again\n")
    assert not loop.solved and f"{g.MAX_STEPS} exits" in loop.message
    assert "does not assemble" in g.check_ring3("start: nonsense").message


@needs_kvm
@pytest.mark.parametrize("entry", triple_fault.BROKEN, ids=lambda e: f"{e[0]}{e[1]}")
def test_each_broken_entry_triple_faults_and_its_fix_runs_the_guest(entry: tuple[str, int],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triple_fault, "broken_entry", lambda: entry)
    crash = triple_fault.crash()
    assert crash.reason == "KVM_EXIT_SHUTDOWN" and "KVM_EXIT_SHUTDOWN" in crash.render()
    missing = [(e.table, e.index) for e in crash.entries if not e.present]
    assert missing == [("GDT", 0), entry]  # GDT[0] is the null descriptor, never present
    fix = _solution("kvm-triple-fault", "my_fix")
    assert fix[:2] == entry and CHECK["kvm-triple-fault"](fix).solved


@needs_kvm
def test_a_fix_elsewhere_or_a_wrong_value_is_not_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triple_fault, "broken_entry", lambda: ("PT", 8))
    around = CHECK["kvm-triple-fault"](("PD", 0, 0x87))  # a 2 MiB page: runs, but PT[8] stays broken
    assert not around.solved and "went around it" in around.message
    still = CHECK["kvm-triple-fault"](("PT", 8, 0x8006))  # the same entry, still not present
    assert not still.solved and "still stops" in still.message and still.hints
    assert not CHECK["kvm-triple-fault"](("PT", 9999, 1)).solved


@needs_kvm
def test_the_learners_device_answers_the_guest() -> None:
    solution = _solution("kvm-mmio-device", "MyDevice")
    assert exercises.check("kvm-mmio-device", solution).solved
    template: dict = {}
    exec(mmio_device.STARTER, template)
    untouched = CHECK["kvm-mmio-device"](template["MyDevice"])
    assert not untouched.solved and "eax = 0, ebx = 0, ecx = 0" in untouched.message and len(untouched.hints) == 3
    m, k = mmio_device.formula()
    assert not any(f"{m} *" in h or f"+ {k}" in h for h in untouched.hints), "a hint hands out the formula"


@needs_kvm
def test_a_device_that_raises_or_answers_elsewhere_gets_feedback_not_a_traceback() -> None:
    class Raises(Device):
        mmio = range(mmio_device.DEVICE_ADDR, mmio_device.DEVICE_ADDR + 8)

        def mmio_read(self, address: int, size: int) -> bytes:
            raise ZeroDivisionError("on purpose")

    class Elsewhere(Device):
        mmio = range(0x2000_0000, 0x2000_0008)

    assert "ZeroDivisionError: on purpose" in CHECK["kvm-mmio-device"](Raises).message
    assert "does not cover" in CHECK["kvm-mmio-device"](Elsewhere).message
    assert "got a NoneType" in CHECK["kvm-mmio-device"](None).message


@pytest.mark.parametrize("notebook, name, starter", [
    ("03_kvm", "kvm-mmio", g.MMIO_STARTER), ("03b_kvm_cpu_modes", "kvm-ring3", g.RING3_STARTER)])
def test_the_answer_cell_holds_the_checked_starter(notebook: str, name: str, starter: str) -> None:
    namespace: dict = {}
    exec(_answer_cell(notebook, name), namespace)
    assert next(v for k, v in namespace.items() if k.startswith("my_")).strip() == starter.strip()


def test_the_device_cell_holds_the_checked_starter_and_the_fix_cell_no_answer() -> None:
    assert _answer_cell("03_kvm", "kvm-mmio-device").strip() == mmio_device.STARTER.strip()
    namespace: dict = {}
    exec(_answer_cell("03_kvm", "kvm-triple-fault"), namespace)
    assert namespace["my_fix"] is None


def _answer_cell(notebook: str, name: str) -> str:
    cells = json.loads((TOP / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    return "".join(next(c for c in cells if f"exercise:{name}" in c.get("metadata", {}).get("tags", []))["source"])
