"""The guest-program exercises of notebooks 03 and 03b, judged on a real VM exit by exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import needs_kvm
from labkit.exercises import guest_programs as g

TOP = Path(__file__).resolve().parent.parent


def _solution(name: str, variable: str) -> str:
    namespace: dict = {}
    exec((TOP / "solutions" / f"{name}.py").read_text(), namespace)  # our own reference files
    return namespace[variable]


@needs_kvm
def test_mmio_solution_passes_and_the_starter_does_not() -> None:
    assert g.check_mmio(_solution("kvm-mmio", "my_mmio_guest")).solved
    starter = g.check_mmio(g.MMIO_STARTER)
    assert not starter.solved and "store of 10" in starter.message and starter.hint


@needs_kvm
def test_mmio_wrong_order_is_measured_from_the_registers() -> None:
    swapped = g.MMIO_STARTER.replace("    # your store and three loads here\n",
                                     "    mov dword ptr [edi], 10\n    mov ecx, [edi]\n    mov ebx, [edi]\n"
                                     "    mov eax, [edi]\n")
    feedback = g.check_mmio(swapped)
    assert not feedback.solved and "(12, 11, 10)" in feedback.message  # what the VMM's answers left there


@needs_kvm
def test_ring3_solution_passes_and_ring0_printing_does_not() -> None:
    assert g.check_ring3(_solution("kvm-ring3", "my_ring3_guest")).solved
    starter = g.check_ring3(g.RING3_STARTER)
    assert not starter.solved and "from ring 0" in starter.message


@needs_kvm
def test_a_guest_that_never_stops_or_does_not_assemble_gets_feedback_not_a_traceback() -> None:
    loop = g.check_mmio(".intel_syntax noprefix\nstart:\n    mov edi, MMIO_COUNTER\nagain:\n    mov eax, [edi]\n"
                        "    jmp again\n")
    assert not loop.solved and f"{g.MAX_STEPS} exits" in loop.message
    assert "does not assemble" in g.check_ring3("start: nonsense").message


@pytest.mark.parametrize("notebook, name, starter", [
    ("03_kvm", "kvm-mmio", g.MMIO_STARTER), ("03b_kvm_cpu_modes", "kvm-ring3", g.RING3_STARTER)])
def test_the_answer_cell_holds_the_checked_starter(notebook: str, name: str, starter: str) -> None:
    cells = json.loads((TOP / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    cell = next(c for c in cells if f"exercise:{name}" in c.get("metadata", {}).get("tags", []))
    namespace: dict = {}
    exec("".join(cell["source"]), namespace)
    assert next(v for k, v in namespace.items() if k.startswith("my_")).strip() == starter.strip()
