"""KVM's own view: the vCPU statistics (KVM_GET_STATS_FD) and the kernel's fds of a VM, read live."""

from __future__ import annotations

import pytest

from conftest import kvm_openable, needs_kvm
from labkit import host
from labkit.kvm import abi, measure
from labkit.kvm.fd import kvm_fds
from labkit.kvm.machine import Machine
from labkit.kvm.stats import Stats
from labkit.kvm.system import Kvm


def _stats_supported() -> bool:
    if not kvm_openable():
        return False
    with Kvm() as kvm:
        return bool(kvm.check_extension(abi.KVM_CAP_BINARY_STATS_FD))


needs_stats = pytest.mark.skipif(not _stats_supported(), reason="this kernel has no KVM_GET_STATS_FD (Linux < 5.14)")


@needs_kvm
@needs_stats
def test_the_vcpu_counts_the_exits_the_vmm_saw_and_closes_its_stats_fd() -> None:
    with Machine("hello_long") as machine:
        stats = Stats(machine.vcpu)
        names = {d.name: d for d in stats.descriptors}
        assert {"exits", "halt_exits", "insn_emulation"} <= set(names) and stats.id.endswith("/vcpu-0")
        assert names["exits"].kind == "cumulative" and names["exits"].unit == "" and names["exits"].size == 1
        before = stats.counters()
        result = machine.run()
        after = stats.counters()
        assert after["halt_exits"] - before["halt_exits"] == 1
        assert after["exits"] - before["exits"] >= result.total_exits  # the kernel sees every exit the VMM saw
        stats.close()
        assert kvm_fds().count("anon_inode:kvm-vcpu-stats") == 0 and stats.closed


@needs_kvm
@needs_stats
def test_exit_kinds_puts_the_vmms_exits_beside_the_kernels_and_knows_the_emulated_ring0() -> None:
    loops = 2_000
    kinds = measure.exit_kinds(loops)
    assert kinds.vmm == {"KVM_EXIT_IO": measure.ROUNDS, "KVM_EXIT_HLT": 1}
    assert kinds.in_kernel_exits >= 0 and "insn_emulation" in kinds.table()
    emulated = host.inspect().verdict.kind == "nested"  # PVM: no hardware guest mode for ring 0
    assert kinds.loop_emulated == emulated and kinds.hardware_assisted != emulated, kinds.table()


@needs_kvm
def test_a_vm_outlives_the_dev_kvm_fd_until_its_own_fds_close() -> None:
    kvm = Kvm()
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu()
    assert kvm_fds()[:3] == ["/dev/kvm", "anon_inode:kvm-vm", "anon_inode:kvm-vcpu:0"]
    kvm.close_device()
    assert "/dev/kvm" not in kvm_fds() and vcpu.get_regs().rip == 0xFFF0  # the reset vector: the vCPU still answers
    vm.close()
    assert kvm_fds() == [] and vcpu.closed
    kvm.close()
