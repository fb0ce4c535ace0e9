"""Every notebook ends with an exercise; every exercise has a reference solution that CI runs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from labkit import exercises
from labkit import kernel as kernel_mod
from labkit.exercises import exercise_name, hypervisor, kernel

TOP = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((TOP / "notebooks").glob("*.ipynb"))


def _exercise_cells(path: Path) -> list[tuple[str, list[dict]]]:
    cells = json.loads(path.read_text())["cells"]
    return [(exercise_name(c), cells[i + 1:]) for i, c in enumerate(cells) if exercise_name(c)]


def _text(output: dict) -> str:
    text = output.get("text") or output.get("data", {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_an_exercise_shown_unsolved(path: Path) -> None:
    found = _exercise_cells(path)
    assert found, f"{path.name} has no cell tagged exercise:NAME"
    for name, rest in found:
        assert (TOP / "solutions" / f"{name}.py").exists(), f"no solutions/{name}.py"
        check = next(c for c in rest if c["cell_type"] == "code")
        assert "nbval-ignore-output" in check.get("metadata", {}).get("tags", []), \
            f"{path.name}: the check cell of {name} must be tagged nbval-ignore-output"
        shown = "".join(_text(o) for o in check.get("outputs", []))
        assert shown.startswith("✘ "), f"{path.name}: the stored notebook should show {name} unsolved"


def test_every_solution_belongs_to_an_exercise() -> None:
    used = {name for p in NOTEBOOKS for name, _ in _exercise_cells(p)}
    assert {p.stem for p in (TOP / "solutions").glob("*.py")} == used


def test_expect_solved_turns_feedback_into_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_EXPECT_SOLVED", "1")
    with pytest.raises(exercises.NotSolved, match="reference solution did not solve"):
        kernel.page_faults(None, mib=1)
    assert kernel.page_faults(256, mib=1).solved


def _check_cell_source(path: Path, name: str) -> str:
    rest = next(r for n, r in _exercise_cells(path) if n == name)
    return "".join(next(c for c in rest if c["cell_type"] == "code")["source"])


def test_every_exercise_has_a_registered_checker_that_its_check_cell_calls() -> None:
    registered = exercises.all_exercises()
    tagged = {name: p for p in NOTEBOOKS for name, _ in _exercise_cells(p)}
    assert set(tagged) == set(registered), "each exercise:NAME tag needs one @exercise(NAME) checker, and back"
    for name, path in tagged.items():
        source = _check_cell_source(path, name)
        # exercises.check("NAME", ...); a checker called by name is a check of NAME too (notebooks not yet ported)
        assert f'exercises.check("{name}"' in source or f".{registered[name].__name__}(" in source, \
            f"{path.name}: the cell after exercise:{name} should call exercises.check({name!r}, ...)"


def test_a_checker_is_registered_once() -> None:
    with pytest.raises(ValueError, match="two checkers"):
        exercises.exercise("page-faults")(lambda: exercises.Feedback(True, "", ""))


def _solution(name: str, **notebook: object) -> dict:
    """The names solutions/NAME.py sets, run with the notebook's names it uses."""
    namespace = dict(notebook)
    exec((TOP / "solutions" / f"{name}.py").read_text(), namespace)  # our own reference files
    return namespace


def test_page_faults_solution_passes_and_the_checker_measured_it() -> None:
    solved = kernel.page_faults(_solution("page-faults")["my_prediction"], mib=10)
    assert solved.solved and "page faults here" in solved.message
    wrong = kernel.page_faults(10, mib=10)
    assert not wrong.solved and "one fault per MiB" in wrong.hint


def test_stop_signal_solution_stops_a_real_child_and_a_wrong_one_ends_it() -> None:
    assert kernel.stop_signal(_solution("stop-signal")["my_signal"]).solved
    ended = kernel.stop_signal(signal.SIGTERM)
    assert not ended.solved and "zombie" in ended.message and ended.hint
    assert not kernel.stop_signal(None).solved


def test_hypervisor_types_solution_passes_and_kvm_is_accepted_either_way_with_an_argument() -> None:
    ns = _solution("hypervisor-types")
    assert hypervisor.hypervisor_types(ns["my_answers"], ns["my_kvm_argument"]).solved
    as_type2 = dict(ns["my_answers"], KVM="Type 2")
    assert hypervisor.hypervisor_types(as_type2, "its VMM, QEMU, is an ordinary process of the host OS").solved
    no_argument = hypervisor.hypervisor_types(as_type2, "")
    assert not no_argument.solved and no_argument.hint
    swapped = dict(ns["my_answers"], **{"Oracle VirtualBox": "type 1"})
    assert not hypervisor.hypervisor_types(swapped, ns["my_kvm_argument"]).solved



def test_vmm_process_knows_the_guests_process_from_another() -> None:
    with kernel_mod.child_process("sleeper") as child, kernel_mod.child_process("sleeper") as other:
        found = _solution("vmm-process", hosted_vm=child)["my_qemu_pid"]
        solved = hypervisor.vmm_process(found, guest_pid=child.pid)
        assert solved.solved and "threads" in solved.message
        wrong = hypervisor.vmm_process(other.pid, guest_pid=child.pid)
        assert not wrong.solved and wrong.hint
    gone = hypervisor.vmm_process(child.pid, guest_pid=child.pid)  # reaped on leaving the block
    assert not gone.solved and "no process" in gone.message
    assert not hypervisor.vmm_process(None, guest_pid=1).solved


def _template_answers() -> dict[str, tuple]:
    """Each registered checker's arguments as a learner's untouched template leaves them."""
    from labkit.exercises import guest_programs, kvm

    return {"page-faults": (None, 10), "stop-signal": (None,), "hypervisor-types": (
                {"Oracle VirtualBox": None, "VMware ESXi": None, "KVM": None}, ""),
            "vmm-process": (None, os.getpid()), "kvm-digits": (kvm.STARTER,), "qemu-vcpus": (None,),
            "libvirt-guest": (None,), "kvm-mmio": (guest_programs.MMIO_STARTER,),
            "kvm-ring3": (guest_programs.RING3_STARTER,), "qemu-cpu-model": (None,), "virsh-pause": (None,),
            "libvirt-xml": (None, '<domain type="...">\n  <!-- your machine -->\n</domain>')}


@pytest.mark.parametrize("name", sorted(exercises.all_exercises()))
def test_the_untouched_template_is_not_solved_and_gets_a_hint(name: str) -> None:
    answers = _template_answers()
    assert name in answers, f"add {name}'s template arguments to _template_answers"
    feedback = exercises.all_exercises()[name](*answers[name])
    assert not feedback.solved and feedback.hint, f"{name}: {feedback}"
