"""Notebook 04's CPU-model exercise judges the flags the guest's kernel saw, not the model's name."""

from __future__ import annotations

from dataclasses import replace

from conftest import FIXTURES
from labkit import images, qemu
from labkit.exercises import cpu_model

REPORT = images.parse_report((FIXTURES / "consoles" / "tiny-tcg.txt").read_text())  # QEMU's default CPU


def booted(report: images.GuestReport) -> qemu.BootResult:
    return qemu.BootResult(report, qemu.BootTimes(0.7, 1.3, 1.35, 0.8), qemu.AccelChoice("tcg", "auto", "test"),
                           qemu.MachineConfig(machine="microvm"), (), "", 0)


def test_the_default_cpu_fails_and_the_message_says_what_the_guest_lacked() -> None:
    wanted, unwanted = cpu_model.target()
    assert wanted not in REPORT.flags
    feedback = cpu_model.cpu_features(booted(REPORT))
    assert not feedback.solved and f"no {wanted}" in feedback.message and feedback.hints


def test_what_the_guest_saw_decides() -> None:
    wanted, unwanted = cpu_model.target()
    fits = replace(REPORT, flags=(REPORT.flags - {unwanted}) | {wanted}, cpu_model="any name at all")
    assert cpu_model.cpu_features(booted(fits)).solved
    both = replace(REPORT, flags=REPORT.flags | {wanted, unwanted})
    assert not cpu_model.cpu_features(booted(both)).solved


def test_no_target_is_met_by_the_models_the_notebook_shows() -> None:
    """The lesson boots Skylake-Client above the exercise: it must not be an answer to any target."""
    skylake = {"sse4_2", "aes", "avx", "avx2"}
    assert all(unwanted in skylake for _wanted, unwanted in cpu_model.TARGETS)


def test_no_boot_is_feedback_not_a_traceback() -> None:
    assert "boot the guest first" in cpu_model.cpu_features(None).message
