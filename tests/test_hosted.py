"""The hosted VMM seen from the host: a real QEMU process, with KVM's handles exactly where KVM runs it."""

from __future__ import annotations

import asyncio
import os

import pytest

from labkit import host, qemu
from labkit.lessons import hosted


def _look_at_idle_guest(accel: qemu.Accel) -> hosted.ProcessLook:
    async def run() -> hosted.ProcessLook:
        vm = await hosted.idle_guest(memory_mib=64, accel=accel)
        try:
            return hosted.look(vm.pid)
        finally:
            await vm.stop()
    return asyncio.run(run())


def test_under_tcg_qemu_is_a_plain_process_of_ours_holding_the_guests_ram() -> None:
    seen = _look_at_idle_guest("tcg")
    assert seen.ppid == os.getpid() and seen.threads >= 2
    assert seen.vm_size >= 64 << 20 and seen.vm_rss < seen.vm_size  # the guest RAM is mapped, not all resident
    assert seen.status["Threads"] == str(seen.threads) and "VmSize" in seen.status
    assert seen.kvm_handles == ()  # TCG: no /dev/kvm, no KVM VM


def test_under_kvm_the_same_process_holds_kvms_handles() -> None:
    if not host.inspect().verdict.usable:
        pytest.skip("no usable /dev/kvm on this host (these lab machines have one)")
    seen = _look_at_idle_guest("kvm")
    assert {"/dev/kvm", "anon_inode:kvm-vm", "anon_inode:kvm-vcpu:0"} <= set(seen.kvm_handles)


def test_the_idle_firmware_is_a_64k_bios_with_its_code_at_the_reset_vector() -> None:
    image = hosted.idle_firmware().read_bytes()
    assert len(image) == 0x10000 and image[0xFFF0:0xFFF3] == b"\xba\xf8\x03"  # mov dx, 0x3f8
