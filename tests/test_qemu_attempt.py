"""labkit.qemu.attempt and labkit.images.console: the KVM attempt's decision and evidence, a boot made readable."""

from __future__ import annotations

import asyncio
import time

import pytest

from conftest import FIXTURES, HOSTS
from labkit import host, images, qemu
from labkit.qemu import attempt as kvm_try
from labkit.widgets import qemu as views

ROOT = host.User(0, frozenset({0}))
CONSOLE = (FIXTURES / "consoles" / "tiny-tcg.txt").read_text()
REPORT = images.parse_report(CONSOLE)


@pytest.mark.parametrize("name, requested, plan", [
    ("intel-vtx-baremetal", "auto", "kvm"),   # the ordinary boot runs under KVM: no extra attempt
    ("amd-svm-baremetal", "auto", "kvm"),
    ("pvm-nested", "auto", "try"),            # /dev/kvm opens, no VT-x/AMD-V: try, then TCG
    ("pvm-nested", "kvm", "try"),
    ("pvm-nested", "tcg", "tcg"),             # asked for TCG: nothing tried
    ("no-dev-kvm", "auto", "tcg"),            # nothing to try
])
def test_plan_per_host(name: str, requested: qemu.Accel, plan: str) -> None:
    chosen = qemu.plan_kvm_boot(host.inspect(HOSTS / name, user=ROOT).verdict, requested)
    assert chosen.plan == plan and chosen.reason


@pytest.mark.parametrize("reported, exited, status, outcome", [
    (True, True, None, "booted"),            # the report line counts, whatever came after
    (False, False, "internal-error", "internal-error"),
    (False, True, None, "exited"),
    (False, False, "shutdown", "exited"),
    (False, False, "running", "timeout"),
    (False, False, None, "timeout"),
])
def test_classify(reported: bool, exited: bool, status: str | None, outcome: str) -> None:
    assert kvm_try.classify(reported, exited, status) == outcome


def test_evidence_is_qemus_internal_error_report_else_the_console_tail() -> None:
    qemu_said = ("qemu-system-x86_64: warning: host doesn't support requested feature\n"
                 "KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000000\n"
                 "emulation failure\nRAX=0000000000000000 RBX=0000000000000000\n"
                 "RIP=ffffffff81234567 RFL=00010046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0\n"
                 "Code=0f c7 0e <f0> 48 0f c7 0e\n")
    evidence = qemu.kvm_evidence(qemu_said, "boot line\n")
    assert evidence.splitlines() == ["KVM internal error. Suberror: 1", "extra data[0]: 0x0000000000000000",
                                     "emulation failure",
                                     "RIP=ffffffff81234567 RFL=00010046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0",
                                     "Code=0f c7 0e <f0> 48 0f c7 0e"]
    assert qemu.kvm_evidence("a warning\n", "one\ntwo\nthree\n", lines=2).endswith("two\nthree")


def test_no_attempt_unless_the_plan_says_try(tmp_path) -> None:
    start = time.monotonic()
    image = images.GuestImage.__new__(images.GuestImage)  # never read: nothing is booted
    for plan in ("kvm", "tcg"):
        tried = asyncio.run(qemu.attempt_kvm_boot(image, qemu.KvmPlan(plan, "test")))  # type: ignore[arg-type]
        assert tried is qemu.NOT_TRIED and not tried.tried and not tried.booted
    assert time.monotonic() - start < 1.0  # on a hardware-KVM host (and inside L1) it costs nothing


def test_console_alarms_are_explained_and_unknown_lines_are_not() -> None:
    console = ("[    0.068564] ACPI BIOS Error (bug): A valid RSDP was not found (20220331/tbxfroot-210)\n"
               "[    2.197732] PCI: Fatal: No config space access function found\n"
               "[    2.3] something the lab has never seen\n")
    explained = images.explain(console)
    assert [e.line.split("] ")[1][:15] for e in explained] == ["ACPI BIOS Error", "PCI: Fatal: No "]
    assert "microvm" in explained[0].why and "PCI bus" in explained[1].why


def test_boot_view_lays_the_report_out_and_folds_the_console() -> None:
    page = views.boot_view(CONSOLE, REPORT)._repr_mimebundle_()
    markup = page["text/html"]
    assert "<details>" in markup and "<table class='labkit-report'>" in markup
    assert '{"v":' not in markup and images.REPORT_MARKER + "…" in markup  # no JSON, cut or whole
    assert REPORT.cpu_model in page["text/plain"] and "<" not in page["text/plain"].replace("<f0>", "")


def test_kvm_attempt_view_shows_how_it_ended() -> None:
    plan = qemu.KvmPlan("try", "PVM: try it")
    failed = qemu.KvmAttempt("timeout", 8.2, "running", "(the console is empty)", "", 0xffffffff8300ac7e, 0, 1.6)
    text = views.kvm_attempt_view(plan, failed)._repr_mimebundle_()["text/plain"]
    assert "PVM: try it" in text and "RIP=0xffffffff8300ac7e CPL=0" in text and "not one byte" in text
    assert "KvmAttempt(" not in text
    assert views.kvm_attempt_view(qemu.KvmPlan("kvm", "hardware"), qemu.NOT_TRIED)._repr_mimebundle_()[
        "text/plain"] == "hardware"


def test_heartbeat_uptimes() -> None:
    from labkit.virt import heartbeat

    console = "LABKIT-COMMAND-BEGIN x\nalive 3.01\r\nalive 4.02\nnot alive 5\nalive 12\n"
    assert heartbeat.uptimes(console) == [3.01, 4.02, 12.0]
