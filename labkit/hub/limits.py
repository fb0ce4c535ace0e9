"""Memory and CPU limits per student, through Linux control groups.

A JupyterHub on one host must keep one student's runaway guest from starving
the room.  Each student's single-user server (and everything it starts: the
kernel, QEMU, their session libvirtd) runs in its own control group
``labkit-hub/<user>`` with a memory cap and a CPU quota.

cgroup v2 is the interface to use: where ``/sys/fs/cgroup`` is a cgroup2
mount offering the ``memory`` and ``cpu`` controllers, the limits are
``memory.max`` and ``cpu.max``.  Hosts booted without systemd may instead
have the legacy (v1) hierarchies — these lab machines do: their cgroup2 mount
offers only ``hugetlb`` — and there the same limits are
``memory.limit_in_bytes`` and ``cpu.cfs_quota_us``.  Where neither is
writable, :func:`detect` says why and the hub runs without limits (the
instructor guide says how to size the host instead).

The group also answers what the hub needs when a server stops: which
processes are still in it (killed, so nothing a student started outlives
their server) and its peak memory use.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import InvalidOptionError

#: Name of the parent group under which each student gets ``<user>``.
PARENT = "labkit-hub"
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    """What one student may use: a memory cap (MiB) and CPUs (1.5 = one and a half cores); None = unlimited."""

    memory_mib: int | None = None
    cpus: float | None = None

    def __post_init__(self) -> None:
        if self.memory_mib is not None and self.memory_mib < 256:
            raise InvalidOptionError(f"a memory limit of {self.memory_mib} MiB per student is too small for the lab",
                                     "give each student at least 1024 MiB (see `labkit doctor`'s per-seat line)")
        if self.cpus is not None and not 0.1 <= self.cpus <= 1024:
            raise InvalidOptionError(f"a CPU limit of {self.cpus} per student is out of range", "use e.g. 1 or 0.5")

    def slurm_request(self) -> tuple[str, str]:
        """A Slurm job's ``--mem`` and ``--cpus-per-task`` for these limits ("" = none): Slurm counts whole CPUs."""
        return (f"{self.memory_mib}M" if self.memory_mib else "", str(math.ceil(self.cpus)) if self.cpus else "")


@dataclass(frozen=True)
class Support:
    """Which cgroup interface this host offers labkit: ``v2``, ``v1`` or None, with the evidence."""

    version: str | None
    memory_root: Path | None
    cpu_root: Path | None
    reason: str


def _mounts(mounts: Path) -> list[tuple[str, Path, set[str]]]:
    rows = []
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] in ("cgroup", "cgroup2"):
            rows.append((fields[2], Path(fields[1]), set(fields[3].split(","))))
    return rows


def _own_path(proc_cgroup: Path, controller: str) -> str:
    """This process's group in the hierarchy of ``controller`` (``""`` for cgroup2), from /proc/self/cgroup."""
    for line in proc_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path.lstrip("/")
    return ""


def detect(mounts: Path = Path("/proc/self/mounts"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> Support:
    """Find a writable cgroup interface with memory and CPU control (v2 first, then v1)."""
    rows = _mounts(mounts)
    notes = []
    for kind, where, _ in rows:
        if kind != "cgroup2":
            continue
        base = where / _own_path(proc_cgroup, "")
        offered = set((base / "cgroup.controllers").read_text().split()) if (base / "cgroup.controllers").exists() \
            else set()
        if {"memory", "cpu"} <= offered and os.access(base, os.W_OK):
            return Support("v2", base, base, f"cgroup v2 at {base} offers memory and cpu")
        notes.append(f"cgroup v2 at {where} offers only {', '.join(sorted(offered)) or 'nothing'}")
    roots = {}
    for want in ("memory", "cpu"):
        for kind, where, options in rows:
            if kind == "cgroup" and want in options:
                roots[want] = where / _own_path(proc_cgroup, want)
    if len(roots) == 2 and all(os.access(p, os.W_OK) for p in roots.values()):
        return Support("v1", roots["memory"], roots["cpu"],
                       "; ".join(notes + [f"cgroup v1 memory at {roots['memory']}, cpu at {roots['cpu']}"]))
    notes.append("no writable cgroup v1 memory and cpu hierarchies" if len(roots) == 2 else
                 "no cgroup v1 memory and cpu hierarchies")
    return Support(None, None, None, "; ".join(notes))


class StudentGroup:
    """The control group ``labkit-hub/<user>`` of one student's server, with its limits applied."""

    def __init__(self, support: Support, user: str) -> None:
        if support.version is None:
            raise InvalidOptionError(f"this host offers no cgroup memory/cpu control: {support.reason}",
                                     "run the hub without limits, or on a host with cgroup v2 (see docs/instructor.md)")
        self.support, self.user = support, user
        assert support.memory_root is not None and support.cpu_root is not None  # a cgroup version has both
        self.memory = support.memory_root / PARENT / user
        self.cpu = support.cpu_root / PARENT / user

    def create(self, limits: Limits) -> None:
        """Make the group (and its parent) and write the limits into it."""
        if self.support.version == "v2":
            parent = self.memory.parent
            parent.mkdir(exist_ok=True)
            (self.memory.parent.parent / "cgroup.subtree_control").write_text("+memory +cpu")
            (parent / "cgroup.subtree_control").write_text("+memory +cpu")
            self.memory.mkdir(exist_ok=True)
            (self.memory / "memory.max").write_text(
                "max" if limits.memory_mib is None else str(limits.memory_mib << 20))
            quota = "max" if limits.cpus is None else str(int(limits.cpus * CPU_PERIOD_US))
            (self.memory / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
            return
        for group in (self.memory, self.cpu):
            group.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # a group left from an earlier server: measure this one's peak
            (self.memory / "memory.max_usage_in_bytes").write_text("0")
        (self.memory / "memory.limit_in_bytes").write_text(
            "-1" if limits.memory_mib is None else str(limits.memory_mib << 20))
        (self.cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
        (self.cpu / "cpu.cfs_quota_us").write_text(
            "-1" if limits.cpus is None else str(int(limits.cpus * CPU_PERIOD_US)))

    def join(self, pid: int) -> None:
        """Move process ``pid`` into the group (its children follow it)."""
        for group in {self.memory, self.cpu}:
            (group / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        path = self.memory / "cgroup.procs"
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def memory_limit_mib(self) -> int | None:
        """The cap in force, read back from the kernel (None: unlimited)."""
        name = "memory.max" if self.support.version == "v2" else "memory.limit_in_bytes"
        raw = (self.memory / name).read_text().strip()
        return None if raw == "max" or int(raw) >= 1 << 60 else int(raw) >> 20

    def cpu_limit(self) -> float | None:
        """The CPU quota in force, in CPUs (None: unlimited)."""
        if self.support.version == "v2":
            quota, period = (self.memory / "cpu.max").read_text().split()
        else:
            quota = (self.cpu / "cpu.cfs_quota_us").read_text().strip()
            period = (self.cpu / "cpu.cfs_period_us").read_text().strip()
        return None if quota in ("max", "-1") else int(quota) / int(period)

    def peak_mib(self) -> int | None:
        """Peak memory charged to the group (RSS plus page cache it touched); None where the kernel can't say."""
        name = "memory.peak" if self.support.version == "v2" else "memory.max_usage_in_bytes"
        path = self.memory / name
        return int(path.read_text()) >> 20 if path.exists() else None

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL every process left in the group and wait until it is empty."""
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def remove(self) -> None:
        """Remove the empty group, and the parent once the last student's group is gone."""
        for group in {self.memory, self.cpu}:
            with contextlib.suppress(FileNotFoundError):
                group.rmdir()
            with contextlib.suppress(OSError):  # busy while other students' groups remain
                group.parent.rmdir()
