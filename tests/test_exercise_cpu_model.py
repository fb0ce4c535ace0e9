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


def test_the_default_cpu_fails_on_both_counts() -> None:
    assert "svm" in REPORT.flags and "avx2" not in REPORT.flags
    feedback = cpu_model.cpu_features(booted(REPORT))
    assert not feedback.solved and "no avx2" in feedback.message and "offers svm" in feedback.message


def test_what_the_guest_saw_decides() -> None:
    intel = replace(REPORT, flags=(REPORT.flags - {"svm"}) | {"avx2"}, cpu_model="Intel Core Processor (Skylake)")
    assert cpu_model.cpu_features(booted(intel)).solved
    half = replace(REPORT, flags=REPORT.flags | {"avx2"})
    assert not cpu_model.cpu_features(booted(half)).solved


def test_no_boot_is_feedback_not_a_traceback() -> None:
    assert "boot the guest first" in cpu_model.cpu_features(None).message
