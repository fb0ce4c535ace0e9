"""The faces of labkit.kvm: CLI demo, exercise checker, the ring-0 and ring-3 timings, exit stepper."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import needs_kvm
from labkit import exercises
from labkit.exercises import kvm as exercise
from labkit.kvm import measure

_solution: dict = {}
exec((Path(__file__).resolve().parent.parent / "solutions" / "kvm-digits.py").read_text(), _solution)
SOLUTION = _solution["my_guest"]  # the instructors' reference solution, as CI runs it in the notebook


def labkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True)


@needs_kvm
@pytest.mark.parametrize("mode, line, exits", [
    ("real", "Hello from 16-bit real mode!", 30),
    ("protected", "Hello from 32-bit protected mode!", 35),
    ("long", "Hello from 64-bit long mode!", 30),
])
def test_cli_demo_prints_serial_and_exit_counts(mode: str, line: str, exits: int) -> None:
    proc = labkit("kvm", "demo", "--mode", mode)
    assert proc.returncode == 0, proc.stderr
    assert f"  {line}\n" in proc.stdout and f"exits: {exits}\n" in proc.stdout
    assert f"KVM_EXIT_IO   {exits - 1:>7}" in proc.stdout and "KVM_EXIT_HLT        1" in proc.stdout


@needs_kvm
def test_cli_demo_trace_and_source() -> None:
    proc = labkit("kvm", "demo", "--mode", "ring3", "--trace", "--source")
    assert proc.returncode == 0, proc.stderr
    assert "iretq" in proc.stdout and "KVM_SET_USER_MEMORY_REGION" in proc.stdout
    assert "ring 3: user mode" in proc.stdout and "stopped by: power off (code 0)" in proc.stdout


def test_cli_demo_rejects_an_unknown_mode() -> None:
    proc = labkit("kvm", "demo", "--mode", "unreal")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


# --------------------------------------------------------------------------- exercise


TARGET = exercise.digits_target()
CHECK = exercises.all_exercises()["kvm-digits"]  # the bare checker: every hint, no attempt counted


@needs_kvm
def test_exercise_solution_passes() -> None:
    verdict = exercises.check("kvm-digits", SOLUTION)
    assert verdict.solved and str(verdict).startswith("✔") and f"{len(TARGET)} port exits" in verdict.message


def test_the_target_varies_between_learners_and_the_template_does_not_hold_it() -> None:
    targets = {exercises.target("kvm-digits", exercise.RANGES, user=f"s{i}", host="hub") for i in range(20)}
    assert len(targets) > 5
    assert TARGET.rstrip("\n") not in exercise.STARTER and "inc" not in exercise.STARTER


@needs_kvm
@pytest.mark.parametrize("change, message, hint", [
    (("start:\n", "start:\n"), "printed ''", "nothing reached"),
    (("cmp al", "cmpx al"), "does not assemble", "line 10"),
    (("jbe next", "jmp next"), "without halting", "does your loop end"),
    (("jbe", "jb"), f"printed {TARGET[:-2] + chr(10)!r}", "stopped early"),
    (("SERIAL_PORT ", "0x3f9 "), "printed ''", "data register"),
    (("SERIAL_PORT ", "0x2f8 "), "I/O port 0x2f8", "SERIAL_PORT"),
    (("    hlt\n", ""), "no device", "end it with hlt"),
])
def test_exercise_failures_come_with_hints(change: tuple[str, str], message: str, hint: str) -> None:
    source = exercise.STARTER if change[0] == "start:\n" else SOLUTION.replace(*change)
    verdict = CHECK(source)
    assert not verdict.solved
    assert message in verdict.message and any(hint in h for h in verdict.hints), verdict
    assert not any(f"'{TARGET[-2]}'" in h for h in verdict.hints), "a hint names the learner's last digit"


# --------------------------------------------------------------------------- three ways to run a guest kernel


@needs_kvm
def test_guest_loop_runs_in_the_requested_ring() -> None:
    for ring in (0, 3):
        timing = measure.guest_loop(ring, 20_000)
        assert timing.where == f"guest ring {ring}" and timing.seconds > 0 and timing.iterations == 20_000


def test_native_loop_runs_the_same_instructions() -> None:
    timing = measure.native_loop(1_000_000)
    if timing is None:
        pytest.skip("this OS refuses writable+executable memory")
    assert timing.where == "host" and timing.seconds > 0


def test_bad_iterations() -> None:
    with pytest.raises(ValueError):
        measure.native_loop(0)
    with pytest.raises(ValueError):
        measure.guest_loop(1, 10)


def test_calibration_grows_until_the_target() -> None:
    calls = []

    def fake(n: int) -> measure.LoopResult:
        calls.append(n)
        return measure.LoopResult("host", n, n * 1e-9)  # 1 ns per iteration

    timing = measure.calibrated(fake, 0.1, start=1000)
    assert timing.seconds >= 0.1 / 3 and calls[0] == 1000 and all(b <= a * 100 + 1 for a, b in zip(calls, calls[1:]))


def t(where: str, ns: float) -> measure.LoopResult:
    return measure.LoopResult(where, 1_000_000, ns * 1e-3)


def test_explain_emulated_ring0() -> None:
    text = measure.explain(measure.RingSummary(t("guest ring 0", 1000.0), t("guest ring 3", 0.3), t("host", 0.3)))
    assert "3,333× longer" in text and "ring-0 instruction emulation" in text and "runs natively" in text


def test_explain_hardware_virtualization() -> None:
    m = measure.RingSummary(t("guest ring 0", 0.31), t("guest ring 3", 0.3), t("host", 0.3))
    text = measure.explain(m)
    assert "about the same speed" in text and "VT-x/AMD-V" in text and "emulat" not in text.split(".")[0]
    assert "ring 0 / ring 3: 1.0×" in m.table()


def test_explain_without_a_native_baseline() -> None:
    text = measure.explain(measure.RingSummary(t("guest ring 0", 5.0), t("guest ring 3", 1.0), None))
    assert "5.0× longer" in text and "no native baseline" in text


# --------------------------------------------------------------------------- widget


@needs_kvm
def test_exit_stepper_steps_and_restarts() -> None:
    from labkit.widgets.kvm import ExitStepper

    stepper = ExitStepper("hello_real")
    try:
        saved = stepper._repr_mimebundle_()  # what a notebook stores: the live view and a picture of it
        assert "nothing has run yet" in saved["text/html"] and "nothing has run yet" in saved["text/plain"]
        assert "children=" not in saved["text/plain"] and "application/vnd.jupyter.widget-view+json" in saved
        first = stepper.step()
        assert str(first.exit) == "KVM_EXIT_IO: out 0x48 'H' to port 0x3f8"
        assert "exit 1" in stepper.title.value and "→" in stepper.code.value
        stepper.run_to_end()
        assert "finished" in stepper.title.value and stepper.step_button.disabled
        assert stepper.step() is None
        stepper.restart()
        assert not stepper.step_button.disabled and stepper.step().index == 1
    finally:
        stepper.close()
    assert stepper.machine is None


@needs_kvm
def test_exit_stepper_shows_guest_errors() -> None:
    from labkit.kvm import guests
    from labkit.kvm.machine import Machine
    from labkit.widgets.kvm import ExitStepper

    stepper = ExitStepper(lambda: Machine(guests.build(".intel_syntax noprefix\nstart: ud2", "long"), "long"))
    try:
        assert stepper.step() is None
        assert "GuestShutdownError" in stepper.title.value and "ud2" in stepper.registers.value
        assert stepper.step_button.disabled
    finally:
        stepper.close()


def test_notebook_exercise_starts_from_the_checked_starter() -> None:
    """The cell the learner edits holds exercise.STARTER, so the stored check output is the starter's."""
    import json

    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "03_kvm.ipynb"
    cells = ["".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict = {}
    exec(next(c for c in cells if c.startswith("my_guest = ")), namespace)
    assert namespace["my_guest"].strip() == exercise.STARTER.strip()
    assert any('exercises.check("kvm-digits", my_guest)' in c for c in cells)
