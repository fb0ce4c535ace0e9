"""Live views of what the kernel manages (memory, processes, interfaces), through psutil."""

from __future__ import annotations

from dataclasses import dataclass

import psutil


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
