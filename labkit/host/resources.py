"""Live views of what the kernel manages (memory, processes, interfaces), through psutil, and what a guest
may ask of them (:func:`check_guest`, refused alike by :mod:`labkit.qemu` and :mod:`labkit.virt`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from labkit.errors import InvalidOptionError
from labkit.i18n import Phrase
from labkit.i18n import noop as N_


@dataclass(frozen=True)
class Memory:
    total: int
    available: int
    used: int
    percent: float
    swap_total: int


@dataclass(frozen=True)
class ProcessSummary:
    count: int
    threads: int
    by_state: dict[str, int]


@dataclass(frozen=True)
class NetInterface:
    name: str
    is_up: bool
    mtu: int
    addresses: tuple[str, ...]


def memory() -> Memory:
    """Physical memory the kernel manages, from ``/proc/meminfo`` via psutil.

    ``memory().total`` (MemTotal) is *this host's memory* for every notebook
    and widget: one definition, shown in MiB (``total >> 20``), so the numbers
    the lessons print about the same host agree.
    """
    vm = psutil.virtual_memory()
    return Memory(vm.total, vm.available, vm.used, vm.percent, psutil.swap_memory().total)


def processes() -> ProcessSummary:
    """How many processes and threads the kernel schedules right now, by state."""
    states: dict[str, int] = {}
    threads = 0
    count = 0
    for proc in psutil.process_iter(["status", "num_threads"]):
        count += 1
        threads += proc.info["num_threads"] or 0
        states[proc.info["status"]] = states.get(proc.info["status"], 0) + 1
    return ProcessSummary(count, threads, dict(sorted(states.items())))


def network_interfaces() -> tuple[NetInterface, ...]:
    """The network interfaces the kernel manages, with their addresses."""
    stats = psutil.net_if_stats()
    addrs = psutil.net_if_addrs()
    return tuple(
        NetInterface(name, st.isup, st.mtu,
                     tuple(a.address for a in addrs.get(name, ()) if a.family.name in ("AF_INET", "AF_INET6")))
        for name, st in sorted(stats.items())
    )


#: The longest kernel command line x86 Linux takes (COMMAND_LINE_SIZE), terminating NUL included.
CMDLINE_MAX = 2048


def check_guest(memory_mib: object, vcpus: object, cmdline: str | None = None, *,
                max_memory_mib: int = 65536) -> None:
    """What a guest may not ask of this host, refused alike by :mod:`labkit.qemu` and :mod:`labkit.virt`.

    Whole numbers only (``"256"`` is a typo, not 256), and no more vCPUs than
    the host has CPUs: each vCPU is a host thread, so an overcommitted guest
    mostly waits (64 vCPUs on 2 CPUs did not boot in 60 s).
    """
    cpus = os.cpu_count() or 1
    if isinstance(memory_mib, bool) or not isinstance(memory_mib, int) or not 16 <= memory_mib <= max_memory_mib:
        raise InvalidOptionError(Phrase(N_("memory_mib={value!r}: must be a whole number of MiB between 16 and "
                                           "{most}"), value=memory_mib, most=max_memory_mib),
                                 Phrase(N_("the tiny guest is happy with 128-256")))
    if isinstance(vcpus, bool) or not isinstance(vcpus, int) or not 1 <= vcpus <= 64:
        raise InvalidOptionError(Phrase(N_("vcpus={value!r}: must be a whole number from 1 to 64"), value=vcpus),
                                 Phrase(N_("this host has {cpus} CPUs; 1 or 2 boot fastest"), cpus=cpus))
    if vcpus > cpus:
        raise InvalidOptionError(Phrase(N_("vcpus={vcpus}: this host has only {cpus} CPUs. Each vCPU is a thread on a "
                                           "host CPU, so the extra ones only wait their turn: the guest boots much "
                                           "slower (64 vCPUs on 2 CPUs did not boot within 60 s)"), vcpus=vcpus,
                                        cpus=cpus),
                                 Phrase(N_("use 1 to {cpus} vCPUs"), cpus=cpus))
    if cmdline is not None and len(cmdline.encode()) >= CMDLINE_MAX:
        raise InvalidOptionError(Phrase(N_("the kernel command line is {size} bytes: Linux on x86 takes at most "
                                           "{most}"), size=len(cmdline.encode()), most=CMDLINE_MAX - 1),
                                 Phrase(N_("shorten it (the tiny guest's own is ~80 bytes)")))
