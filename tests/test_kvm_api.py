"""The raw API objects on the real /dev/kvm: system fd, VM, memory slots, vCPUs — and their failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from conftest import needs_kvm
from labkit import asm
from labkit.errors import AccessDeniedError, InvalidOptionError, KvmUnavailableError
from labkit.kvm import abi, modes, system
from labkit.kvm.errors import GuestAddressError, KvmIoctlError
from labkit.kvm.exits import HltExit
from labkit.kvm.system import Kvm

TOP = Path(__file__).resolve().parent.parent


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def real_mode_vm(kvm: Kvm, source: str):
    """A VM of ``kvm`` with 64 KiB of RAM holding ``source``, assembled for real mode at 0x8000."""
    code = asm.assemble(".intel_syntax noprefix\n" + source, 16, 0x8000)
    vm = kvm.create_vm()
    vm.add_memory(0, 64 << 10)
    vm.memory.write(0x8000, code.image)
    return vm, code


def test_every_label_of_a_program_has_its_address_and_the_callers_values_are_not_labels() -> None:
    """Labels in code, data and bss, at the origin asked for; ``--defsym`` values are the caller's, not labels."""
    code = asm.assemble("start: mov $PORT, %dx\nloop: jmp loop\n.data\nvalue: .long 5\n.bss\nbuffer: .skip 4\n",
                        bits=64, origin=0x1000, defines={"PORT": 0x3F8})
    assert code.image[:4] == bytes.fromhex("66 ba f8 03")  # mov $0x3f8, %dx
    assert (code.symbol("start"), code.symbol("loop"), code.symbol("value")) == (0x1000, 0x1004, 0x1006)
    assert code.symbol("buffer") == 0x100A and "PORT" not in code.symbols
    assert asm.assemble("boot: hlt\n", bits=16, origin=0x7C00).symbol("boot") == 0x7C00


def test_missing_dev_kvm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(system, "DEV_KVM", tmp_path / "kvm")
    with pytest.raises(KvmUnavailableError) as info:
        Kvm()
    assert "does not exist" in info.value.what and "labkit doctor" in info.value.fix


def test_not_a_kvm_device(tmp_path: Path) -> None:
    """A file that is not /dev/kvm: the first ioctl fails and the fd is not leaked."""
    fake = tmp_path / "kvm"
    fake.write_text("")
    before = open_fds()
    with pytest.raises(KvmIoctlError) as info:
        Kvm(fake)
    assert info.value.ioctl == "KVM_GET_API_VERSION"
    assert open_fds() == before


@needs_kvm
def test_permission_denied_names_the_fix() -> None:
    """As a user who may not open /dev/kvm (root runs this check as 'nobody', from a copy of labkit
    that 'nobody' can read, with the system's Python: the checkout may be private)."""
    code = ("from labkit.kvm.system import Kvm\nfrom labkit.errors import AccessDeniedError\n"
            "try:\n    Kvm()\nexcept AccessDeniedError as e:\n    print('denied:', e.fix)\n")
    if os.getuid() != 0 and os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("this non-root user may open /dev/kvm, and only root can become another user")
    as_nobody = {"user": 65534, "group": 65534, "extra_groups": []} if os.getuid() == 0 else {}
    with tempfile.TemporaryDirectory(prefix="labkit-test-") as tmp:
        os.chmod(tmp, 0o755)
        shutil.copytree(TOP / "labkit", Path(tmp) / "labkit")
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tmp,
                              env={"PYTHONPATH": tmp, "PATH": os.environ["PATH"]}, **as_nobody)
    assert proc.stdout.startswith("denied:") and "usermod -aG kvm" in proc.stdout, proc.stderr


def test_access_denied_is_a_permission_error() -> None:
    assert issubclass(AccessDeniedError, PermissionError)


@needs_kvm
def test_system_fd_answers() -> None:
    with Kvm() as kvm:
        assert kvm.api_version() == abi.KVM_API_VERSION == 12
        caps = kvm.capabilities()
        assert caps.user_memory and caps.nr_memslots > 0 and caps.max_vcpus >= caps.nr_vcpus > 0
        assert kvm.vcpu_mmap_size() >= 4096
        cpuid = kvm.supported_cpuid()
        assert any(e.function == 0 for e in cpuid) and system.has_feature(cpuid, "lm")
    assert kvm.closed


def test_has_feature_reads_the_right_bit() -> None:
    entry = system.CpuidEntry(0x80000001, 0, 0, 0, 0, 0, 1 << 26)
    assert system.has_feature((entry,), "pdpe1gb") and not system.has_feature((entry,), "lm")
    assert not system.has_feature((), "pdpe1gb")


@needs_kvm
def test_trace_names_each_ioctl() -> None:
    lines: list[str] = []
    with Kvm(trace=lines.append) as kvm, kvm.create_vm() as vm:
        vm.add_memory(0, 1 << 20)
        vm.create_vcpu()
    names = [line.split()[0] for line in lines]
    assert names == ["KVM_GET_API_VERSION", "KVM_CREATE_VM", "KVM_CHECK_EXTENSION", "KVM_SET_USER_MEMORY_REGION",
                     "KVM_CREATE_VCPU", "KVM_GET_VCPU_MMAP_SIZE"]
    assert "KVM_CAP_NR_MEMSLOTS" in lines[2] and "(1 MiB)" in lines[3]


# --------------------------------------------------------------------------- memory


@needs_kvm
@pytest.mark.parametrize("gpa, size, message", [
    (0, 1000, "not a positive multiple of the page size"),
    (0, 0, "not a positive multiple"),
    (0, -4096, "not a positive multiple"),
    (0x800, 4096, "not page-aligned"),
    (1 << 52, 4096, "52-bit"),
])
def test_bad_slot_sizes_and_alignment(gpa: int, size: int, message: str) -> None:
    with Kvm() as kvm, kvm.create_vm() as vm:
        with pytest.raises(InvalidOptionError, match=message):
            vm.add_memory(gpa, size)
        assert vm.memory.slots == []


@needs_kvm
def test_overlapping_slots_are_refused() -> None:
    with Kvm() as kvm, kvm.create_vm() as vm:
        vm.add_memory(0, 1 << 20)
        with pytest.raises(InvalidOptionError, match="overlaps slot 0"):
            vm.add_memory(0x80000, 1 << 20)
        second = vm.add_memory(1 << 20, 1 << 20, readonly=True)
        assert (second.slot, second.readonly, vm.memory.size) == (1, True, 2 << 20)


@needs_kvm
def test_guest_memory_is_bounds_checked() -> None:
    with Kvm() as kvm, kvm.create_vm() as vm:
        vm.add_memory(0, 64 << 10)
        vm.memory.write(0x1000, b"labkit")
        assert vm.memory.read(0x1000, 6) == b"labkit"
        assert vm.memory.read((64 << 10) - 2, 2) == b"\0\0"
        with pytest.raises(GuestAddressError, match="not .entirely. inside one memory slot"):
            vm.memory.read((64 << 10) - 2, 4)  # runs off the end
        with pytest.raises(GuestAddressError):
            vm.memory.write(1 << 30, b"x")
        with pytest.raises(InvalidOptionError):
            vm.memory.read(0, -1)


@needs_kvm
def test_guest_and_host_share_the_slot_memory() -> None:
    """What the guest stores, the VMM reads in its own memory — no copy."""
    with Kvm() as kvm:
        vm, _ = real_mode_vm(kvm, "start: mov word ptr [0x500], 0x4b4f\n hlt")
        vcpu = vm.create_vcpu()
        modes.enter(vcpu, vm.memory, "real", 0x8000)
        assert isinstance(vcpu.run(), HltExit)
        assert vm.memory.read(0x500, 2) == b"OK"


# --------------------------------------------------------------------------- vCPUs and cleanup


@needs_kvm
def test_registers_round_trip() -> None:
    with Kvm() as kvm, kvm.create_vm() as vm:
        vcpu = vm.create_vcpu()
        regs = vcpu.set_regs(rax=0x1234, r15=0xFFFF_0000_0000_0001, rip=0x8000)
        assert vcpu.get_regs() == regs and regs.r15 == 0xFFFF_0000_0000_0001
        special = vcpu.special()
        assert special.mode == "real" and special.cs.selector == 0xF000  # the reset vector's segment


@needs_kvm
def test_two_vcpus_run_in_threads() -> None:
    with Kvm() as kvm:
        vm, code = real_mode_vm(kvm, "start: mov ax, 1\n hlt\nsecond: mov ax, 2\n hlt")
        vcpus = [vm.create_vcpu() for _ in range(2)]
        for vcpu, label in zip(vcpus, ("start", "second")):
            modes.enter(vcpu, vm.memory, "real", code.symbol(label))
        results: dict[int, tuple] = {}
        threads = [threading.Thread(target=lambda v=v: results.__setitem__(v.index, (v.run(), v.get_regs().rax)))
                   for v in vcpus]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert {i: (type(e), ax) for i, (e, ax) in results.items()} == {0: (HltExit, 1), 1: (HltExit, 2)}


@needs_kvm
def test_everything_is_released_on_close_and_on_error() -> None:
    before = open_fds()
    with pytest.raises(InvalidOptionError):
        with Kvm() as kvm:
            vm = kvm.create_vm()
            vm.add_memory(0, 1 << 20)
            vcpu = vm.create_vcpu()
            vm.add_memory(0x1000, 4096)  # overlaps: raises inside the with block
    assert kvm.closed and vm.closed and vcpu.closed
    assert all(s.mapping.closed for s in vm.memory.slots)
    assert open_fds() == before


@needs_kvm
def test_a_closed_object_says_so() -> None:
    with Kvm() as kvm:
        vm = kvm.create_vm()
        vcpu = vm.create_vcpu()
    with pytest.raises(InvalidOptionError, match="closed vCPU 0"):
        vcpu.get_regs()
    with pytest.raises(InvalidOptionError, match="KVM_RUN on a closed vCPU 0"):
        vcpu.run()
    vm.close()  # twice is fine
