"""Notebook 02's exercises: classify hypervisors (KVM either way, with the argument); find your VMM process.

Where the answer is about this host, the checker looks: whether KVM's code is
in this kernel's symbol table, and which host process a guest really is.
"""

from __future__ import annotations

import psutil

from labkit import hosted, kernel
from labkit.exercises import Feedback, exercise
from labkit.i18n import _

#: The settled ones.  KVM is argued both ways by serious sources (see :data:`KVM_ARGUMENTS`).
SETTLED = {"Oracle VirtualBox": "type 2", "VMware ESXi": "type 1"}
#: Words that make an argument for each side: KVM is in the kernel (type 1); its VMM is a host process (type 2).
KVM_ARGUMENTS = {
    "type 1": ("kernel", "module", "kvm.ko", "ring 0", "hardware", "no host", "itself"),
    "type 2": ("process", "host", "qemu", "user space", "userspace", "application",
               "operating system", "vmm"),
}


def _normal(answer: str | None) -> str:
    return " ".join((answer or "").lower().replace("-", " ").split())


@exercise("hypervisor-types")
def hypervisor_types(answers: dict[str, str | None], kvm_argument: str = "") -> Feedback:
    """VirtualBox and ESXi have one answer; KVM takes either, if ``kvm_argument`` argues for it."""
    expected = set(SETTLED) | {"KVM"}
    if set(answers) != expected:
        return Feedback(False, _("answer exactly {names}").format(names=sorted(expected)),
                        _("keep the three names of the template"))
    wrong = sorted(name for name, truth in SETTLED.items() if _normal(answers[name]) != truth)
    if wrong:
        return Feedback(False, _("check {names}").format(names=", ".join(wrong)),
                        _("does it need a host operating system to run on, or does it run on the hardware itself?"))
    side = _normal(answers["KVM"])
    if side not in KVM_ARGUMENTS:
        return Feedback(False, _("KVM: answer 'type 1' or 'type 2' (both are defended; give your reason)"),
                        _("where is the hypervisor's code: in the host kernel, in a host process, or both?"))
    argument = _normal(kvm_argument)
    if not any(word in argument for word in KVM_ARGUMENTS[side]):
        return Feedback(False, _("KVM as {side}: defensible, but my_kvm_argument does not argue it yet").format(
                            side=side),
                        _("type 1: where does KVM's code run?  type 2: what is the program that holds the guest?"))
    in_kernel = "kvm_vcpu_ioctl" in kernel.kernel_symbols({"kvm_vcpu_ioctl"})
    measured = (_("measured here: kvm_vcpu_ioctl is in this kernel's symbol table, so KVM runs inside the kernel")
                if in_kernel else _("this kernel has no KVM code to look at (no kvm_vcpu_ioctl symbol)"))
    other = "type 2" if side == "type 1" else "type 1"
    return Feedback(True, _("VirtualBox type 2, ESXi type 1, and KVM {side}: {measured}; the {other} reading also "
                            "has its sources — the guest's VMM (QEMU) is an ordinary process of the host OS").format(
                                side=side, measured=measured, other=other))



@exercise("vmm-process")
def vmm_process(pid: int | None, guest_pid: int) -> Feedback:
    """Is ``pid`` the host process that holds the guest (``guest_pid``), as the learner found it with ps?"""
    if pid is None:
        return Feedback(False, _("set my_qemu_pid to the pid of your guest's QEMU"),
                        "ps -eo pid,user,args | grep [q]emu-system   (yours is the line with 'hosted' in its -name)")
    try:
        seen = hosted.look(pid)
    except psutil.NoSuchProcess:
        return Feedback(False, _("there is no process {pid} on this host now").format(pid=pid),
                        _("run the ps command again"))
    except (psutil.AccessDenied, PermissionError):
        return Feedback(False, _("process {pid} belongs to another user").format(pid=pid),
                        _("look for your own user in ps's USER column"))
    if pid != guest_pid:
        return Feedback(False, _("process {pid} ({name}, user {user}) is not your guest's QEMU").format(
                            pid=pid, name=seen.name, user=seen.user),
                        _("several guests may run on this host: pick the line whose -name has 'hosted' and your user"))
    return Feedback(True, _("pid {pid} holds your guest: an ordinary host process (user {user}, {threads} threads, "
                            "{rss_mib} MiB resident) that the host kernel schedules like any other").format(
                                pid=pid, user=seen.user, threads=seen.threads, rss_mib=seen.vm_rss >> 20))
