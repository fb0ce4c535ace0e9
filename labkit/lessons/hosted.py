"""A guest's VMM seen from the host: an ordinary process (notebook 02's "hosted", made visible).

:func:`idle_guest` starts QEMU with a 64 KiB firmware of our own that prints
one character and halts, so the guest costs no CPU while it is looked at.
:func:`look` reads that process the way any host tool does (``/proc/PID``,
psutil): its parent, owner, threads, memory, and its open files — among
them ``/dev/kvm`` and KVM's per-VM and per-vCPU handles where KVM runs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

from labkit import qemu

#: The firmware: at the reset vector (F000:FFF0, 16-bit real mode) print '.' on COM1, then halt for good.
IDLE_FIRMWARE = """\
.intel_syntax noprefix
.code16
.org 0xFFF0
    mov dx, 0x3f8
    mov al, '.'
    out dx, al          # one character on the serial port: the guest ran
1:  cli
    hlt                 # and now it sleeps: no interrupt can wake it
    jmp 1b
.org 0x10000
"""


@dataclass(frozen=True)
class Started:
    """A guest :func:`idle_guest` started in this process: its QEMU's pid and accelerator."""

    pid: int
    accel: str


#: The guests this process started, oldest first: their pids stay evidence after the guests end.
_started: list[Started] = []


def started() -> tuple[Started, ...]:
    """The idle guests this process started (running or not), so a checker can tell a learner's own guest."""
    return tuple(_started)


def idle_firmware() -> Path:
    """The assembled idle firmware, in the user's cache (by content)."""
    return qemu.bios_image(IDLE_FIRMWARE, "idle")[0]


async def idle_guest(memory_mib: int = 64, accel: qemu.Accel = "auto", timeout: float = 20.0) -> qemu.QemuMachine:
    """Start QEMU on the idle firmware (KVM where ``/dev/kvm`` is usable) and wait until the guest ran.

    The caller owns the machine: ``await vm.stop()`` (it also dies with its parent).
    """
    choice = qemu.choose_accel(accel, "payload")
    config = qemu.MachineConfig(accel=choice.name, machine="pc", memory_mib=memory_mib, bios=idle_firmware())
    vm = await qemu.QemuMachine(config, name="hosted").start()
    if vm.pid is not None:
        _started.append(Started(vm.pid, choice.name))
    try:
        await vm.wait_for(".", timeout=timeout, label="the idle firmware's '.'")
    except BaseException:
        await vm.stop()
        raise
    return vm


@dataclass(frozen=True)
class ProcessLook:
    """A process as the host sees it: what ``ps``, ``/proc/PID/status`` and ``ls -l /proc/PID/fd`` show."""

    pid: int
    ppid: int
    user: str
    name: str
    state: str
    threads: int
    vm_size: int  # bytes of virtual memory (for QEMU: the guest's RAM is part of it)
    vm_rss: int  # bytes resident in physical memory now
    status: dict[str, str]  # the /proc/PID/status lines a lesson shows
    kvm_handles: tuple[str, ...]  # open files that are KVM's: /dev/kvm, anon_inode:kvm-vm, kvm-vcpu:N


#: The /proc/PID/status fields worth showing.
STATUS_FIELDS = ("Name", "State", "PPid", "Uid", "Threads", "VmSize", "VmRSS")


def look(pid: int) -> ProcessLook:
    """Read process ``pid`` from the host's side (only one's own processes show their open files)."""
    proc = psutil.Process(pid)
    with proc.oneshot():
        memory = proc.memory_info()
        facts = (proc.ppid(), proc.username(), proc.name(), proc.status(), proc.num_threads())
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_FIELDS:
            status[key] = " ".join(value.split())
    handles = []
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in sorted(fd_dir.iterdir(), key=lambda p: int(p.name)) if os.access(fd_dir, os.R_OK) else ():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target == "/dev/kvm" or target.startswith("anon_inode:kvm"):
            handles.append(target)
    return ProcessLook(pid, *facts, memory.vms, memory.rss, status, tuple(handles))
