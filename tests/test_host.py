"""labkit.host on recorded hosts of every kind, and on this live machine."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HOSTS, needs_kvm
from labkit import host

ROOT_USER = host.User(0, frozenset({0}))
STUDENT = host.User(1000, frozenset({1000}))
KVM_STUDENT = host.User(1001, frozenset({1001, 108}))

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
    assert host.cpuid_instruction(0)[1:] == struct.unpack("<4I", driver)[1:]


def test_live_resources() -> None:
    mem = host.memory()
    assert 0 < mem.available <= mem.total
    procs = host.processes()
    assert procs.count >= 1 and procs.threads >= procs.count
    assert sum(procs.by_state.values()) == procs.count
    lo = {i.name: i for i in host.network_interfaces()}["lo"]
    assert lo.is_up and "127.0.0.1" in lo.addresses


def test_tsc_frequency_from_recorded_hosts(tmp_path: Path) -> None:
    """Invariant TSC: sysfs first; else, with no frequency scaling, the kernel's calibration in cpuinfo."""
    pvm = host.tsc_frequency(HOSTS / "pvm-nested")
    assert pvm is not None and pvm.khz == 2_596_126 and "cpu MHz" in pvm.source
    assert host.tsc_frequency(HOSTS / "no-dev-kvm") is None  # no 'cpu MHz' recorded: not knowable
    tree = shutil.copytree(HOSTS / "intel-vtx-baremetal", tmp_path / "h")
    (tree / "sys/devices/system/cpu/cpu0").mkdir(parents=True)
    (tree / "sys/devices/system/cpu/cpu0/tsc_freq_khz").write_text("2112000\n")
    assert host.tsc_frequency(tree) == host.TscFrequency(2_112_000, "/sys/devices/system/cpu/cpu0/tsc_freq_khz")

    # labkit nested's L1 (no constant_tsc: TCG offers no invtsc) is told its host's frequency at boot
    emulated = shutil.copytree(HOSTS / "no-dev-kvm", tmp_path / "l1")
    assert host.tsc_frequency(emulated) is None
    (emulated / "proc/cmdline").write_text("console=ttyS0 quiet labkit.host_tsc_khz=2596094 rdinit=/x\n")
    found = host.tsc_frequency(emulated)
    assert found is not None and found.khz == 2_596_094 and "labkit.host_tsc_khz" in found.source


# ----------------------------------------------------------------- unknown is not absent


def _tree(tmp_path: Path, files: dict[str, str], meta: dict | None = None) -> Path:
    root = tmp_path / "h"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    if meta is not None:
        (root / "host.json").write_text(json.dumps(meta))
    return root


CPUINFO = (HOSTS / "intel-vtx-baremetal/proc/cpuinfo").read_text()


def test_a_bare_tree_is_a_partial_capture(tmp_path: Path) -> None:
    """Only /proc/cpuinfo was pasted: modules, /dev/kvm and module loading stay unknown."""
    report = host.inspect(_tree(tmp_path, {"proc/cpuinfo": CPUINFO}), user=ROOT_USER)
    assert report.kernel.loadable_modules is None and "not recorded" in report.kernel.design
    assert {m.state for m in report.kernel.kvm_modules} == {"unknown"}
    assert report.kvm.present is None and report.verdict.kind == "unknown"
    assert "no KVM module is loaded" not in report.verdict.reasons
    assert "/dev/kvm does not exist" not in report.verdict.reasons


def test_the_manifest_says_what_was_recorded_as_absent(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"proc/cpuinfo": CPUINFO},
                 {"format": 2, "recorded": ["proc/cpuinfo", "proc/modules", "sys/module", "dev/kvm"]})
    report = host.inspect(root, user=ROOT_USER)
    assert report.kernel.loadable_modules is False and "without loadable modules" in report.kernel.design
    assert {m.state for m in report.kernel.kvm_modules} == {"absent"}
    assert report.kvm.present is False and report.verdict.kind == "none"
    assert "/dev/kvm does not exist" in report.verdict.reasons


def test_live_a_missing_proc_modules_means_no_loadable_modules(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"proc/cpuinfo": CPUINFO, "sys/module/kvm/uevent": ""})
    kernel = host.kernel_info(host.LiveSource(root))
    assert kernel.loadable_modules is False
    assert {m.name: m.state for m in kernel.kvm_modules} == {
        "kvm": "built in", "kvm_intel": "absent", "kvm_amd": "absent", "kvm_pvm": "absent"}


def test_a_pasted_lsmod_grep_knows_only_what_it_shows(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"lsmod": "Module  Size  Used by\nkvm_intel  372736  0\nkvm  1142784  1 kvm_intel\n"},
                 {"format": 2, "modules_filter": "kvm"})
    kernel = host.kernel_info(host.RecordedSource(root))
    assert {m.name: m.state for m in kernel.kvm_modules} == {
        "kvm": "loaded module", "kvm_intel": "loaded module", "kvm_amd": "not loaded", "kvm_pvm": "not loaded"}
    assert kernel.guest_drivers == ()  # virtio/hv_* could be loaded: a grep for kvm would not show them


# ----------------------------------------------------------------- /dev/kvm must be KVM's device


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_text(""), "a regular file"),
    (lambda p: p.symlink_to("/dev/null"), "a symlink to /dev/null"),
])
def test_a_live_dev_kvm_that_is_not_the_device_is_never_opened(tmp_path: Path, make, says: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path, {"proc/cpuinfo": CPUINFO})
    (root / "dev").mkdir()
    make(root / "dev/kvm")
    monkeypatch.setattr(host.LiveSource, "probe_kvm", lambda self: pytest.fail("probed a non-device"))
    dev = host.kvm_device(host.LiveSource(root), ROOT_USER)
    assert dev.present is False and dev.accessible is False
    assert says in dev.error and "not KVM's character device 10:232" in dev.error


@pytest.mark.parametrize("node, present", [
    ({"type": "char", "rdev": "1:3", "mode": "0666", "uid": 0, "gid": 0, "owner": "root", "group": "root"}, False),
    ({"type": "regular file", "mode": "0644", "uid": 0, "gid": 0, "owner": "root", "group": "root"}, False),
    ({"type": "char", "rdev": "10:232", "mode": "0666", "uid": 0, "gid": 0, "owner": "root", "group": "root"}, True),
])
def test_a_recorded_device_number_decides(tmp_path: Path, node: dict, present: bool) -> None:
    report = host.inspect(_tree(tmp_path, {"proc/cpuinfo": CPUINFO}, {"format": 2, "devices": {"kvm": node}}),
                          user=ROOT_USER)
    assert report.kvm.present is present
    assert (report.verdict.kind == "hardware") is present


@pytest.mark.parametrize("make", [lambda p: p.write_text(""), lambda p: p.symlink_to("/dev/null")])
def test_a_dev_kvm_file_in_a_recording_is_unknown_not_kvm(tmp_path: Path, make) -> None:
    root = _tree(tmp_path, {"proc/cpuinfo": CPUINFO})
    (root / "dev").mkdir()
    make(root / "dev/kvm")
    report = host.inspect(root, user=ROOT_USER)
    assert report.kvm.present is None and report.verdict.kind == "unknown"
    assert "a recording keeps /dev/kvm in host.json" in report.kvm.error


# ----------------------------------------------------------------- never had VT-x, or switched off


NO_VMX = CPUINFO.replace(" vmx", "")


@pytest.mark.parametrize("meta, dmesg, state", [
    ({"cpuid": {"0x1": [0x906A4, 0, 1 << 5, 0]}}, "", "disabled by firmware"),  # CPUID has VMX, cpuinfo lost it
    ({"msr": {"0x3a": 0x1}}, "", "disabled by firmware"),  # IA32_FEATURE_CONTROL locked, VMX off
    ({"msr": {"0x3a": 0x5}}, "", "unknown"),  # locked with VMX on: the flag's absence is not firmware
    ({}, "x86/cpu: VMX (outside TXT) disabled by BIOS\n", "disabled by firmware"),
    ({}, "", "unknown"),  # neither: say both possibilities and how to tell
])
def test_firmware_or_never_had_it(tmp_path: Path, meta: dict, dmesg: str, state: str) -> None:
    files = {"proc/cpuinfo": NO_VMX, **({"dmesg": dmesg} if dmesg else {})}
    verdict = host.inspect(_tree(tmp_path, files, {"format": 2, **meta}), user=ROOT_USER).verdict
    assert verdict.virtualization.state == state
    if state == "unknown":
        assert "never had VT-x/AMD-V, or the firmware switched it off" in " ".join(verdict.virtualization.evidence)
        assert "rdmsr 0x3a" in verdict.fix and "look the model up" in verdict.fix
    else:  # the evidence decided: no "one or the other"
        assert "never had VT-x/AMD-V, or the firmware switched it off" not in " ".join(verdict.virtualization.evidence)


def test_an_old_kernel_keeps_the_vmx_flag_when_firmware_disabled_it(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"proc/cpuinfo": CPUINFO, "dmesg": "kvm: disabled by bios\n"},
                 {"format": 2, "recorded": ["dev/kvm"]})
    verdict = host.inspect(root, user=ROOT_USER).verdict
    assert verdict.virtualization.state == "disabled by firmware" and verdict.kind == "none"
    assert "firmware (BIOS/UEFI)" in verdict.fix


def test_vmx_flags_line_is_read(tmp_path: Path) -> None:
    vmx_flags = "vmx flags\t: vnmi preemption_timer ept vpid unrestricted_guest\n"
    text = CPUINFO.replace("flags\t\t:", vmx_flags + "flags\t\t:", 1)
    cpu = host.cpu_info(host.RecordedSource(_tree(tmp_path, {"proc/cpuinfo": text})))
    assert {"ept", "unrestricted_guest"} <= cpu.vmx_flags


def test_i686_host_cannot_run_notebook_03(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"proc/cpuinfo": CPUINFO, "proc/sys/kernel/osrelease": "4.19.0-6-686-pae\n"},
                 {"format": 2, "devices": {"kvm": {"type": "char", "rdev": "10:232", "mode": "0666", "uid": 0,
                                                   "gid": 0, "owner": "root", "group": "root"}}})
    report = host.inspect(root, user=ROOT_USER)
    assert report.cpu.arch == "i686" and not report.runs_raw_kvm and not report.verdict.boots_linux
    assert "x86-64 host" in host.raw_kvm_blocker(report)[0]


# ----------------------------------------------------------------- notebook 03's gate


def test_notebook_03_gate_stops_a_student_cleanly() -> None:
    report = host.inspect(HOSTS / "pvm-nested", user=STUDENT)
    with pytest.raises(host.RawKvmUnavailableError) as info:
        host.require_raw_kvm(report)
    shown = "\n".join(info.value._render_traceback_())  # what IPython shows instead of a traceback
    assert shown.startswith("Notebook 03 stops here: you may not open /dev/kvm (mode 0600, root:root).")
    assert "fix: /dev/kvm is root:root mode 0600" in shown and "groupadd" in shown
    assert "RECORDED RUN, FOR REFERENCE ONLY — not this host, not live." in shown
    assert "Hello from 16-bit real mode!" in shown and "Traceback" not in shown
    assert host.require_raw_kvm(host.inspect(HOSTS / "pvm-nested", user=ROOT_USER)) is None


# ----------------------------------------------------------------- bad recordings and paths

GOOD_DEVICE = {"type": "char", "rdev": "10:232", "mode": "0600", "uid": 0, "gid": 0, "owner": "root", "group": "root"}

BAD_HOST_JSON = {
    "invalid JSON": "{not json",
    "empty file": "",
    "not an object": "[1, 2, 3]",
    "mode is a number": json.dumps({"devices": {"kvm": {**GOOD_DEVICE, "mode": 600}}}),
    "uid is a string": json.dumps({"devices": {"kvm": {**GOOD_DEVICE, "uid": "root"}}}),
    "an unknown key": json.dumps({"format": 2, "devcies": {}}),
    "a cpuid leaf of 3 registers": json.dumps({"cpuid": {"0x40000000": [1, 2, 3]}}),
    "api_version is a string": json.dumps({"kvm_probe": {"api_version": "12"}}),
    "recorded is a string": json.dumps({"recorded": "proc/cpuinfo"}),
    "an unknown format": json.dumps({"format": 7}),
    "an unknown device type": json.dumps({"devices": {"kvm": {"type": "pipe"}}}),
}


@pytest.mark.parametrize("what", sorted(BAD_HOST_JSON))
def test_a_bad_host_json_is_one_clear_error(tmp_path: Path, what: str) -> None:
    root = _tree(tmp_path, {"proc/cpuinfo": CPUINFO, "host.json": BAD_HOST_JSON[what]})
    with pytest.raises(host.HostDataError) as info:
        host.inspect(root)
    assert "host.json" in info.value.what and info.value.fix


def test_a_binary_host_json_is_one_clear_error(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"proc/cpuinfo": CPUINFO})
    (root / "host.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(host.HostDataError, match="not valid JSON"):
        host.inspect(root)


def _bad_paths(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "unrelated").mkdir()
    (tmp_path / "unrelated/notes.txt").write_text("x")
    return {"does not exist": tmp_path / "missing", "is a file": tmp_path / "a-file",
            "is empty": tmp_path / "empty", "holds none of": tmp_path / "unrelated"}


def test_bad_paths_are_one_clear_error(tmp_path: Path) -> None:
    for says, path in _bad_paths(tmp_path).items():
        with pytest.raises(host.HostDataError, match=says):
            host.inspect(path)


def test_bad_paths_and_recordings_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`labkit host --root` with each bad input: exit 2, `labkit: error:` and a fix, never a traceback."""
    from labkit import cli

    bad = list(_bad_paths(tmp_path).values())
    for i, text in enumerate(BAD_HOST_JSON.values()):
        bad.append(_tree(tmp_path / f"j{i}", {"proc/cpuinfo": CPUINFO, "host.json": text}))
    for path in bad:  # in-process: anything but a LabkitError would escape main() and fail the test
        assert cli.main(["host", "--root", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("labkit: error: ") and "  fix: " in err
    assert len(bad) == 15
    proc = subprocess.run([sys.executable, "-m", "labkit", "host", "--root", str(bad[0])], capture_output=True,
                          text=True)  # and once as a learner runs it
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""


def test_garbage_proc_files_give_honest_unknowns(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"proc/modules": "\n\n   \nkvm\n", "proc/version": "garbage"})
    (root / "proc/cpuinfo").write_bytes(b"\x00\xff: :\n\n:::\nflags:\n")
    report = host.inspect(root, user=ROOT_USER)
    assert report.verdict.kind == "unknown" and report.kernel.module("kvm").state == "loaded module"


@pytest.mark.parametrize("files, hypervisor, decided", [
    ({"proc/modules": "hv_vmbus 131072 7 hv_netvsc, Live 0x0\n"}, "Microsoft Hyper-V", "guest driver hv_vmbus"),
    ({"proc/modules": "virtio_pci 28672 0 - Live 0x0\n"}, "KVM/QEMU (virtio)", "guest driver virtio_pci"),
    ({"sys/hypervisor/type": "xen\n"}, "Xen", "/sys/hypervisor/type = 'xen'"),
    ({"dmesg": "Booting paravirtualized kernel on bare hardware\n"}, None, "on bare hardware"),
])
def test_drivers_sysfs_and_dmesg_are_evidence(tmp_path: Path, files: dict, hypervisor: str | None,
                                               decided: str) -> None:
    platform = host.inspect(_tree(tmp_path, files), user=ROOT_USER).platform
    assert platform.virtual is (hypervisor is not None) and platform.hypervisor == hypervisor
    assert decided in platform.decided_by
