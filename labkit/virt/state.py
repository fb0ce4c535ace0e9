"""A domain in libvirt's own terms: its states, its statistics, and how it is destroyed and removed.

Below :mod:`labkit.virt.connection` and :mod:`labkit.virt.domain`, which both need these (the connection to
sweep and list domains, a domain to report and end itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import libvirt

#: virDomainState, in enum order, as ``virsh domstate`` prints them.
STATES = ("no state", "running", "blocked", "paused", "shutting down", "shut off", "crashed", "pmsuspended")


#: What ``virDomainListGetStats`` is asked for (``virsh domstats --state --cpu-total --balloon --vcpu``).
STATS_FLAGS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BALLOON
               | libvirt.VIR_DOMAIN_STATS_VCPU)
#: Undefine also drops a managed-save image and snapshot metadata, which would otherwise block it.
UNDEFINE_FLAGS = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA


@dataclass(frozen=True)
class DomainStats:
    """State, CPU time and memory of a domain, from ``virDomainListGetStats`` (``virsh domstats``).

    Counters a stopped domain does not have are 0.
    """

    state: str
    cpu_time_ns: int  # all of QEMU's threads: vCPUs, main loop, I/O (as the host kernel accounts them)
    vcpu_time_ns: int  # only the vCPU threads: time the guest's CPUs really ran
    vcpus: int
    memory_kib: int  # balloon.current: memory the guest has now
    max_memory_kib: int
    rss_kib: int  # host memory QEMU really uses for it

    @classmethod
    def from_record(cls, record: Mapping[str, int]) -> DomainStats:
        vcpus = record.get("vcpu.current", 0)
        return cls(state=STATES[record.get("state.state", 0)], cpu_time_ns=record.get("cpu.time", 0),
                   vcpu_time_ns=sum(record.get(f"vcpu.{i}.time", 0) for i in range(vcpus)),
                   vcpus=vcpus, memory_kib=record.get("balloon.current", 0),
                   max_memory_kib=record.get("balloon.maximum", 0), rss_kib=record.get("balloon.rss", 0))


def destroy_domain(dom: libvirt.virDomain) -> None:
    """Destroy ``dom`` if it runs; a guest that powers off by itself meanwhile is not an error."""
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError:
        if dom.isActive():
            raise


def remove_domain(dom: libvirt.virDomain) -> None:
    """Destroy and undefine ``dom`` (also its managed-save image and snapshot metadata).

    A transient domain has no definition: it is gone once destroyed.
    """
    destroy_domain(dom)
    try:
        persistent = dom.isPersistent()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return
        raise
    if persistent:
        dom.undefineFlags(UNDEFINE_FLAGS)
