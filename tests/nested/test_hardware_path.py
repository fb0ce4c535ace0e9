"""The lab's hardware-KVM path, run for real inside the emulated AMD-V machine (L1).

Each test states what a learner with VT-x/AMD-V would see; here the CPU is
QEMU's TCG emulating SVM with nested paging, and ``kvm_amd`` drives it.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from labkit import doctor, host, images, qemu, runtime
from labkit.kvm import guests
from labkit.kvm.machine import Machine

TOP = Path(__file__).resolve().parents[2]


def labkit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=TOP)


def no_qemu_left() -> list[str]:
    return [" ".join(p.info["cmdline"][:3]) for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and Path(p.info["cmdline"][0]).name.startswith("qemu-system")]


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


# --------------------------------------------------------------------------- QEMU under KVM


def test_qmp_pause_and_registers_under_kvm() -> None:
    """``accel="kvm"`` asked for by name (notebook 04 below boots with ``"auto"`` and checks it chose KVM)."""
    async def scenario() -> dict:
        image = images.tiny_guest(command="while :; do :; done", fetch=False, progress=False)
        config, _ = qemu.linux_config(image, qemu.choose_accel("kvm"))
        async with qemu.QemuMachine(config, name="qmp") as vm:
            await vm.wait_for(images.REPORT_MARKER, timeout=120)
            out = {"kvm": await vm.qmp("query-kvm")}
            await vm.qmp("stop")
            out["stopped"] = (await vm.qmp("query-status"))["status"]
            out["registers"] = qemu.parse_registers(await vm.hmp("info registers"))
            await vm.qmp("cont")
            out["resumed"] = (await vm.qmp("query-status"))["status"]
        return out

    out = asyncio.run(scenario())
    assert out["kvm"] == {"enabled": True, "present": True}
    assert out["stopped"] == "paused" and out["resumed"] == "running"
    assert out["registers"]["RIP"] != 0 and out["registers"]["CPL"] in (0, 3)
    assert not no_qemu_left()


# --------------------------------------------------------------------------- libvirt


@pytest.mark.skipif(os.geteuid() != 0, reason="qemu:///system and its daemon need root (CI runs as root)")
def test_virt_boot_under_system_libvirt_chooses_kvm() -> None:
    from labkit import virt

    with virt.connect() as conn:
        assert conn.choice.uri == virt.SYSTEM_URI
        choice = conn.domain_type()
        assert choice.type == "kvm", choice
    proc = labkit("virt", "boot", "--name", "l1", "--cmdline")
    assert proc.returncode == 0, proc.stderr
    assert "-accel kvm" in proc.stdout and "report: Linux " in proc.stdout, proc.stdout
    assert "a transient domain leaves no definition" in proc.stdout
    assert not [p for p in no_qemu_left() if runtime.prefix() in p]


# --------------------------------------------------------------------------- notebooks


@pytest.mark.parametrize(("notebook", "parameters", "expected"), [
    ("03_kvm", {"trap_seconds": 0.1}, {"kvm": "hardware"}),
    # one timed boot, under KVM only, and a short ring-3 loop: under TCG inside L1 each is an emulator inside an
    # emulator (an L2 boot ~30 s alone, minutes on a loaded host; the default 50 M iterations as long), and no part
    # of the hardware path.  Its first boot (accel "auto") is the test that "auto" chooses KVM here.
    ("04_qemu", {"boots_per_accel": 1, "tcg_boots": False, "payload_iterations": 2_000_000}, {"accel": "kvm"}),
])
def test_notebook_takes_its_hardware_branch(notebook: str, parameters: dict, expected: dict,
                                            tmp_path: Path) -> None:
    from labkit import runner

    result = runner.run_one(TOP / "notebooks" / f"{notebook}.ipynb", tmp_path, parameters)
    assert result.ok, result.failure
    assert {k: result.results.get(k) for k in expected} == expected, result.results


# --------------------------------------------------------------------------- fixes the hardware path revealed


@pytest.mark.skipif(os.geteuid() != 0, reason="creating system users needs root (CI runs as root)")
def test_libvirtd_configure_creates_its_user_beside_a_leftover_group(tmp_path: Path) -> None:
    """Seen in L1: the host's libvirt-qemu user gone, its group not; useradd refused (exit 9) without --gid.
    L1's /etc is its own (a RAM overlay), so the state is made here for real."""
    from labkit import libvirtd

    gone = subprocess.run(["userdel", libvirtd.QEMU_USER], capture_output=True, text=True, check=False)
    assert gone.returncode in (0, 6), gone.stderr  # 6: there was no such user
    group = subprocess.run(["groupadd", "--system", libvirtd.QEMU_USER], capture_output=True, text=True, check=False)
    assert group.returncode in (0, 9), group.stderr  # 9: the group was left behind already
    done = libvirtd.configure(tmp_path / "qemu.conf")
    assert f"created system user {libvirtd.QEMU_USER}" in done, done
    assert pwd.getpwnam(libvirtd.QEMU_USER).pw_gid == grp.getgrnam(libvirtd.QEMU_USER).gr_gid
