"""labkit.host on recorded hosts of every kind, and on this live machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import HOSTS, needs_kvm
from labkit import host

ROOT_USER = host.User(0, frozenset({0}))
STUDENT = host.User(1000, frozenset({1000}))
KVM_STUDENT = host.User(1001, frozenset({1001, 108}))

# name: (verdict kind, virtual?, hypervisor, hardware virt, loadable modules?, kvm module states)
EXPECTED = {
    "intel-vtx-baremetal": ("hardware", False, None, "Intel VT-x", True,
                            {"kvm": "loaded module", "kvm_intel": "loaded module"}),
    "amd-svm-baremetal": ("hardware", False, None, "AMD-V", True,
                          {"kvm": "loaded module", "kvm_amd": "loaded module"}),
    "kvm-guest-no-nested": ("none", True, "KVM", None, True, {}),
    "no-dev-kvm": ("none", False, None, None, True, {}),
    "pvm-nested": ("nested", True, "KVM", None, False, {"kvm": "built in", "kvm_pvm": "built in"}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_hosts(name: str) -> None:
    kind, virtual, hypervisor, hw, loadable, modules = EXPECTED[name]
    report = host.inspect(HOSTS / name, user=ROOT_USER)
    assert report.verdict.kind == kind
    assert report.verdict.label == host.VERDICT_LABELS[kind]
    assert report.platform.virtual is virtual
    assert report.platform.hypervisor == hypervisor
    assert report.cpu.hardware_virtualization == hw
    assert report.kernel.loadable_modules is loadable
    present = {m.name: m.state for m in report.kernel.kvm_modules if m.state != "absent"}
    assert present == modules
    assert report.verdict.boots_linux is (kind == "hardware")
    assert report.nested is (virtual and kind != "none")
    json.dumps(report.to_dict())  # the whole report is JSON-serialisable


def test_intel_details() -> None:
    report = host.inspect(HOSTS / "intel-vtx-baremetal", user=ROOT_USER)
    assert report.cpu.vendor == "GenuineIntel"
    assert (report.cpu.logical_cpus, report.cpu.physical_cores) == (4, 2)
    assert report.kernel.release == "6.1.0-18-amd64"
    assert "loadable modules" in report.kernel.design
    assert {m.name: m.nested for m in report.kernel.kvm_modules}["kvm_intel"] == "Y"
    assert report.kvm.api_version == 12 and report.kvm.capabilities["KVM_CAP_USER_MEMORY"] == 1
    assert report.verdict.usable and report.verdict.fix is None
    assert "Dell Inc." in " ".join(report.platform.evidence)


def test_pvm_host_explains_itself() -> None:
    report = host.inspect(HOSTS / "pvm-nested", user=ROOT_USER)
    reasons = " ".join(report.verdict.reasons)
    assert "kvm_pvm" in reasons and "virtual machine" in reasons
    assert "CPUID leaf 0x40000000 vendor signature 'KVMKVMKVM'" in report.platform.evidence
    assert "without loadable modules" in report.kernel.design and "nomodule" in report.kernel.design


@pytest.mark.parametrize("user, usable, fix", [
    (ROOT_USER, True, None),
    (KVM_STUDENT, True, None),
    (STUDENT, False, "sudo usermod -aG kvm $USER"),
])
def test_kvm_group_permissions(user: host.User, usable: bool, fix: str | None) -> None:
    report = host.inspect(HOSTS / "intel-vtx-baremetal", user=user)
    assert report.verdict.usable is usable
    assert report.kvm.accessible is usable
    assert (report.verdict.fix is None) if fix is None else (fix in report.verdict.fix)
    assert report.verdict.kind == "hardware"  # the host can, even if this user cannot


def test_root_only_device_fix() -> None:
    report = host.inspect(HOSTS / "pvm-nested", user=STUDENT)
    assert not report.verdict.usable
    assert "chmod 0660 /dev/kvm" in report.verdict.fix


@pytest.mark.parametrize("name, fix", [
    ("kvm-guest-no-nested", "nested virtualization"),
    ("no-dev-kvm", "firmware (BIOS/UEFI)"),
])
def test_no_kvm_fixes(name: str, fix: str) -> None:
    verdict = host.inspect(HOSTS / name, user=ROOT_USER).verdict
    assert not verdict.usable and fix in verdict.fix


def test_module_not_loaded_fix(tmp_path: Path) -> None:
    """VT-x present but kvm_intel not loaded: the fix is modprobe."""
    tree = shutil.copytree(HOSTS / "intel-vtx-baremetal", tmp_path / "h")
    (tree / "proc/modules").write_text("bridge 311296 0 - Live 0x0\n")
    shutil.rmtree(tree / "sys/module")
    meta = json.loads((tree / "host.json").read_text())
    meta["devices"] = {}
    (tree / "host.json").write_text(json.dumps(meta))
    verdict = host.inspect(tree, user=ROOT_USER).verdict
    assert verdict.kind == "none"
    assert verdict.fix == "load the module: sudo modprobe kvm_intel"
    assert "no KVM module is loaded" in verdict.reasons


def test_probe_error_is_reported(tmp_path: Path) -> None:
    tree = shutil.copytree(HOSTS / "amd-svm-baremetal", tmp_path / "h")
    meta = json.loads((tree / "host.json").read_text())
    meta["kvm_probe"] = {"error": "open /dev/kvm: No such device"}
    (tree / "host.json").write_text(json.dumps(meta))
    verdict = host.inspect(tree, user=ROOT_USER).verdict
    assert not verdict.usable and "No such device" in verdict.fix


# ----------------------------------------------------------------- this machine


def test_live_host_is_self_consistent() -> None:
    report = host.inspect()
    assert report.kernel.release == Path("/proc/sys/kernel/osrelease").read_text().strip()
    assert report.cpu.logical_cpus >= 1
    assert report.verdict.kind in host.VERDICT_LABELS
    has_dev = Path("/dev/kvm").exists()
    assert report.kvm.present is has_dev
    assert (report.verdict.kind == "none") is (not has_dev)


@needs_kvm
def test_live_kvm_probe_asks_the_kernel() -> None:
    report = host.inspect()
    assert report.kvm.accessible
    assert report.kvm.api_version == 12
    assert report.kvm.capabilities["KVM_CAP_USER_MEMORY"] == 1
    assert report.kvm.capabilities["KVM_CAP_MAX_VCPUS"] >= 1


def test_record_round_trip(tmp_path: Path) -> None:
    live = host.inspect()
    recorded = host.inspect(host.record(tmp_path / "me"))
    assert recorded.verdict.kind == live.verdict.kind
    assert recorded.cpu == live.cpu
    assert recorded.platform == live.platform
    assert recorded.kernel.kvm_modules == live.kernel.kvm_modules


@pytest.mark.skipif(not Path("/dev/cpu/0/cpuid").exists(), reason="no cpuid driver (/dev/cpu/0/cpuid)")
def test_cpuid_instruction_matches_cpuid_driver() -> None:
    """The in-process CPUID stub and the kernel's cpuid driver agree (leaf 0: vendor)."""
    try:
        with open("/dev/cpu/0/cpuid", "rb") as dev:
            dev.seek(0)
            driver = dev.read(16)
    except PermissionError:
        pytest.skip("/dev/cpu/0/cpuid is root-only and we are not root")
    import struct
    assert host._cpuid_instruction(0)[1:] == struct.unpack("<4I", driver)[1:]


def test_live_resources() -> None:
    import os
    mem = host.memory()
    assert 0 < mem.available <= mem.total
    procs = host.processes()
    assert procs.count >= 1 and procs.threads >= procs.count
    assert sum(procs.by_state.values()) == procs.count
    lo = {i.name: i for i in host.network_interfaces()}["lo"]
    assert lo.is_up and "127.0.0.1" in lo.addresses
    assert os.getpid() > 0


def test_tsc_frequency_from_recorded_hosts(tmp_path: Path) -> None:
    """Invariant TSC: sysfs first; else, with no frequency scaling, the kernel's calibration in cpuinfo."""
    pvm = host.tsc_frequency(HOSTS / "pvm-nested")
    assert pvm is not None and pvm.khz == 2_596_126 and "cpu MHz" in pvm.source
    assert host.tsc_frequency(HOSTS / "no-dev-kvm") is None  # no 'cpu MHz' recorded: not knowable
    tree = shutil.copytree(HOSTS / "intel-vtx-baremetal", tmp_path / "h")
    (tree / "sys/devices/system/cpu/cpu0").mkdir(parents=True)
    (tree / "sys/devices/system/cpu/cpu0/tsc_freq_khz").write_text("2112000\n")
    assert host.tsc_frequency(tree) == host.TscFrequency(2_112_000, "/sys/devices/system/cpu/cpu0/tsc_freq_khz")
