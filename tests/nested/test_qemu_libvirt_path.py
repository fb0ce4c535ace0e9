"""The lab's hardware-KVM path, QEMU and libvirt: run for real inside the emulated AMD-V machine (L1).

Each test states what a learner with VT-x/AMD-V would see; here the CPU is
QEMU's TCG emulating SVM with nested paging, and ``kvm_amd`` drives it.
``test_kvm_path.py`` (another L1, beside this one) takes KVM itself.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import subprocess
from pathlib import Path

import pytest
from inside import labkit, qemus, run_notebook

from labkit import images, qemu, runtime

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
    assert not qemus()


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
    assert not [p for p in qemus() if runtime.prefix() in p]


# --------------------------------------------------------------------------- notebook 04


def test_notebook_04_takes_its_hardware_branch(tmp_path: Path) -> None:
    """One timed boot, under KVM only, and a short ring-3 loop: under TCG inside L1 each is an emulator inside an
    emulator (an L2 boot ~30 s alone, minutes on a loaded host; the default 50 M iterations as long), and no part
    of the hardware path.  Its first boot (accel "auto") is the test that "auto" chooses KVM here."""
    run_notebook("04_qemu", {"boots_per_accel": 1, "tcg_boots": False, "payload_iterations": 2_000_000},
                 {"accel": "kvm"}, tmp_path)


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
