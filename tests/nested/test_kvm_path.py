"""The lab's hardware-KVM path, KVM itself: run for real inside the emulated AMD-V machine (L1).

Each test states what a learner with VT-x/AMD-V would see; here the CPU is
QEMU's TCG emulating SVM with nested paging, and ``kvm_amd`` drives it.
``test_qemu_libvirt_path.py`` (another L1, beside this one) takes QEMU and libvirt.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inside import labkit, run_notebook

from labkit import doctor, host
from labkit.kvm import guests
from labkit.kvm.machine import Machine

# --------------------------------------------------------------------------- host and doctor


def test_live_host_verdict_is_hardware_amd_v() -> None:
    report = host.inspect()
    assert report.cpu.svm and not report.cpu.vmx and report.cpu.hardware_virtualization == "AMD-V"
    assert report.verdict.kind == "hardware", report.verdict
    assert report.verdict.usable and report.verdict.boots_linux
    assert "kvm_amd" in " ".join(report.verdict.reasons)


def test_cli_host_json_says_hardware_with_svm() -> None:
    proc = labkit("host", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verdict"]["kind"] == "hardware" and "svm" in data["cpu"]["flags"]


def test_doctor_is_ready_with_hardware_kvm() -> None:
    checks = {c.name: c for c in doctor.run_checks()}
    assert checks["kvm"].status == "ok" and checks["kvm"].detail == "hardware KVM"
    assert "AMD-V available" in checks["cpu"].detail
    assert "kvm_amd" in checks["kernel"].detail


# --------------------------------------------------------------------------- the raw VMM on SVM


@pytest.mark.parametrize(("mode", "pages"), [("real", "2M"), ("protected", "2M"), ("long", "2M"),
                                             ("long", "4K"), ("long", "1G"), ("switch", "2M"), ("ring3", "2M")])
def test_raw_vmm_runs_every_mode_on_svm(mode: str, pages: str) -> None:
    """Every mode and page size, 1 GiB included: the emulated CPU has pdpe1gb and KVM on SVM offers it
    (PVM hosts do not, and labkit refuses 1 GiB pages there)."""
    guest = guests.guest(guests.HELLO[mode])
    with Machine(guest, pages=pages) as machine:
        result = machine.run()
    assert result.serial.strip(), result
    assert result.total_exits > 0 and result.stopped_by


# --------------------------------------------------------------------------- notebook 03


def test_notebook_03_takes_its_hardware_branch(tmp_path: Path) -> None:
    run_notebook("03_kvm", {"trap_seconds": 0.1}, {"kvm": "hardware"}, tmp_path)
