"""labkit's own VMM boots the tiny Linux guest on real kvm_amd, inside the emulated AMD-V machine (L1).

What a learner with VT-x/AMD-V gets from ``labkit kvm linux``: no QEMU, one vCPU on /dev/kvm, the guest's
report with this boot's nonce read from the VMM's own UART, and the guest's reset as ``KVM_EXIT_SHUTDOWN``.
"""

from __future__ import annotations

import os

import psutil
from inside import qemus

from labkit import images, vmm


def test_labkits_vmm_boots_the_tiny_guest_to_its_report() -> None:
    fds = set(os.listdir("/proc/self/fd"))
    console: list[str] = []
    result = vmm.boot(on_output=console.append, timeout=120)
    assert qemus() == [] and psutil.Process().children() == []  # no QEMU, no helper process: this process is the VMM
    found = images.find_kernel(fetch=False, progress=False)
    assert result.kernel == found.vmlinux and result.kernel_kind == "vmlinux"
    report = result.report  # parsed with the boot's nonce
    assert report.kernel_release == found.release and report.cpus == 1
    assert report.hypervisor == "KVM" and "reboot=t" in report.cmdline  # CPUID 0x40000000 as this VMM passed it on
    assert "".join(console) == result.console and images.REPORT_MARKER in result.console
    assert result.exits["KVM_EXIT_SHUTDOWN"] == 1 and result.exits["KVM_EXIT_IO"] > 100  # the UART's bytes, at least
    assert result.interrupts > 0  # the tty wrote /init's report by IRQ 4
    t = result.times
    assert 0 < t.setup_s < t.userspace_s < t.poweroff_s and t.report_after_first_run_s > 0
    data = result.to_dict()
    assert (data["vmm"], data["accel"], data["report"]["kernel_release"]) == ("labkit", "kvm", found.release)
    assert set(os.listdir("/proc/self/fd")) == fds  # /dev/kvm, the VM and the vCPU are closed
