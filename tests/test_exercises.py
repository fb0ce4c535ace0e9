"""Every notebook ends with an exercise; every exercise has a reference solution that CI runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from conftest import needs_kvm
from labkit import exercises
from labkit.exercises import exercise_name, hypervisor, kernel
from labkit.lessons import hosted

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
        exercises.check("stop-signal", None)


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
    """Predict-then-measure: the checker reads the prediction on record, then touches the learner's size."""
    try:
        exercises.predict("page-faults", _solution("page-faults")["my_prediction"])
        solved = kernel.page_faults()
        assert solved.solved and f"touching {kernel.fault_target()} MiB" in solved.message
        exercises.predict("page-faults", kernel.fault_target())  # one fault per MiB: the classic slip
        wrong = exercises.all_exercises()["page-faults"]()  # the bare checker: every hint it has
        assert not wrong.solved and "page faults here, not" in wrong.message and len(wrong.hints) == 2
        exercises.forget("page-faults")
        assert "make your prediction first" in kernel.page_faults().message
    finally:
        exercises.forget("page-faults")


def test_stop_signal_solution_does_the_learners_task_to_a_child_that_ignores_what_it_can() -> None:
    assert kernel.stop_signal(_solution("stop-signal")["my_signal"]).solved
    ignored = exercises.all_exercises()["stop-signal"](signal.SIGTERM)  # ignored by the child: nothing done
    assert not ignored.solved and "unchanged" in ignored.message and len(ignored.hints) == 2
    assert not kernel.stop_signal(None).solved


@pytest.mark.parametrize("task, sig", [("stopped", signal.SIGSTOP), ("ended", signal.SIGKILL),
                                       ("resumed", signal.SIGCONT), ("stopped", signal.SIGTSTP)])
def test_stop_signal_judges_every_task_by_the_childs_state(monkeypatch: pytest.MonkeyPatch, task: str,
                                                           sig: signal.Signals) -> None:
    monkeypatch.setattr(exercises, "target", lambda name, choices: task)
    assert kernel.stop_signal(sig).solved is (sig != signal.SIGTSTP)  # the child ignores SIGTSTP


@needs_kvm  # the solution's evidence is the kvm line of /proc/misc
def test_hypervisor_types_solution_passes_and_kvm_needs_evidence_from_this_host() -> None:
    ns = _solution("hypervisor-types")
    assert hypervisor.hypervisor_types(ns["my_answers"], ns["my_kvm_evidence"]).solved
    as_type2 = dict(ns["my_answers"], KVM="Type 2")
    wrong_side = hypervisor.hypervisor_types(as_type2, ns["my_kvm_evidence"])
    assert not wrong_side.solved and "supports type 1" in wrong_side.message
    made_up = hypervisor.hypervisor_types(ns["my_answers"], "KVM is in the kernel")
    assert not made_up.solved and "not one this host shows" in made_up.message
    first, second = hypervisor.names()[:2]
    swapped = dict(ns["my_answers"], **{first: "type 2", second: "type 1"})
    assert not hypervisor.hypervisor_types(swapped, ns["my_kvm_evidence"]).solved


def test_kvm_evidence_is_checked_against_the_host_now(tmp_path: Path) -> None:
    misc = tmp_path / "misc"
    misc.write_text(" 62 userfaultfd\n232 kvm\n")
    assert hypervisor.evidence_side("232 kvm", misc=misc) == "type 1"
    assert hypervisor.evidence_side("233 kvm", misc=misc) is None
    dev = tmp_path / "null"
    dev.symlink_to("/dev/null")  # a character device 1:3
    assert hypervisor.evidence_side("crw-rw-rw- 1 root root 1, 3 Nov 19 19:51 /dev/kvm", dev=dev) == "type 1"
    assert hypervisor.evidence_side("crw------- 1 root root 10, 232 Nov 19 19:51 /dev/kvm", dev=dev) is None
    (tmp_path / "kvm").mkdir()
    assert hypervisor.evidence_side(f"{tmp_path}/kvm", modules=tmp_path) == "type 1"
    assert hypervisor.evidence_side(f"{tmp_path}/kvm_amd", modules=tmp_path) is None
    assert hypervisor.evidence_side("4242 root /usr/bin/qemu-system-x86_64 -accel kvm") is None  # not our guest


@needs_kvm
def test_vmm_process_knows_the_notebooks_own_guest_from_another_process() -> None:
    async def scenario() -> None:
        vm = await hosted.idle_guest()
        try:
            found = _solution("vmm-process", hosted_vm=vm)["my_qemu_pid"]
            solved = hypervisor.vmm_process(found)
            assert solved.solved and "threads" in solved.message
            assert hypervisor.evidence_side(f"{vm.pid} root /usr/bin/qemu-system-x86_64 -name x") == "type 2"
            wrong = hypervisor.vmm_process(os.getpid())
            assert not wrong.solved and "does not hold your guest" in wrong.message
        finally:
            await vm.stop()
        gone = hypervisor.vmm_process(found)
        assert not gone.solved and "no process" in gone.message
    asyncio.run(scenario())
    assert not hypervisor.vmm_process(None).solved


def _template_answers() -> dict[str, tuple]:
    """Each registered checker's arguments as a learner's untouched template leaves them."""
    from labkit.exercises import guest_programs, kvm, mmio_device
    from labkit.exercises import vmm as vmm_exercise

    exercises.forget("page-faults")  # the template records a prediction of None
    exercises.forget("paging-prediction")
    starter_device: dict = {}
    exec(mmio_device.STARTER, starter_device)  # the template cell: a class whose handlers answer nothing
    starter_transmit: dict = {}
    exec(vmm_exercise.TRANSMIT_STARTER, starter_transmit)  # the template cell: a function that does nothing
    return {"kvm-triple-fault": (None,), "kvm-mmio-device": (starter_device["MyDevice"],),
            "page-faults": (), "stop-signal": (None,), "hypervisor-types": ({}, ""),
            "vmm-process": (None,), "kvm-digits": (kvm.STARTER,), "qemu-vcpus": (None,),
            "libvirt-guest": (None,), "kvm-mmio": (guest_programs.MMIO_STARTER,),
            "kvm-ring3": (guest_programs.RING3_STARTER,), "qemu-cpu-model": (None,), "virsh-pause": (None,),
            "overlay-growth": (None, None), "second-disk": (None, Path("vdb.qcow2"), None),
            "pml4-index": (None, 0x5555_1234_5678), "paging-prediction": (None,),
            "net-forward": (None, None, None), "net-probe": (None, None),
            "libvirt-xml": (None, '<domain type="...">\n  <!-- your machine -->\n</domain>'),
            "vmm-e820": ([],), "vmm-transmit": (starter_transmit["my_transmit"],)}


@pytest.mark.parametrize("name", sorted(exercises.all_exercises()))
def test_the_untouched_template_is_not_solved_and_gets_a_hint(name: str) -> None:
    answers = _template_answers()
    assert name in answers, f"add {name}'s template arguments to _template_answers"
    feedback = exercises.all_exercises()[name](*answers[name])
    assert not feedback.solved and feedback.hint, f"{name}: {feedback}"
