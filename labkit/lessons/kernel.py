"""The kernel at work: small live experiments for its jobs.

The kernel sits between programs and hardware and manages processes, memory
and the network; programs reach it through system calls.  Each function here
makes the kernel do one of those jobs and returns what the kernel reports
about it, so notebook 01 can *show* the claims instead of stating them.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from labkit.errors import InvalidOptionError
from labkit.host.resources import memory
from labkit.i18n import Phrase, _, joined
from labkit.i18n import noop as N_

# ----------------------------------------------------------------------------- processes


#: The states psutil reports, as the learner reads them (the data keeps psutil's English words).
PROCESS_STATES = (N_("running"), N_("sleeping"), N_("disk-sleep"), N_("stopped"), N_("zombie"), N_("idle"))


@dataclass(frozen=True)
class ProcessView:
    """What the kernel's process table says about one process."""

    pid: int
    ppid: int
    name: str
    state: str
    nice: int
    cpu: int  # the CPU it last ran on
    voluntary_switches: int  # it gave up the CPU (sleep, I/O wait)
    involuntary_switches: int  # the scheduler took the CPU away (time slice over)
    threads: int

    def __str__(self) -> str:
        return _("pid {pid}, parent {ppid}, {name}: {state}, nice {nice}, last ran on CPU {cpu}, {threads} thread(s), "
                 "context switches: {voluntary} voluntary, {involuntary} involuntary").format(
            pid=self.pid, ppid=self.ppid, name=self.name, state=_(self.state), nice=self.nice, cpu=self.cpu,
            threads=self.threads, voluntary=self.voluntary_switches, involuntary=self.involuntary_switches)


def view(pid: int) -> ProcessView:
    """The kernel's view of process ``pid`` (``/proc/<pid>/stat`` and ``status``, via psutil)."""
    p = psutil.Process(pid)
    with p.oneshot():
        ctx = p.num_ctx_switches()
        return ProcessView(pid, p.ppid(), p.name(), p.status(), p.nice(), p.cpu_num(),
                           ctx.voluntary, ctx.involuntary, p.num_threads())


#: A sleeper that ignores every signal it can: only the ones the kernel never lets a process ignore still act.
STUBBORN = """\
import signal, sys, time
for sig in signal.valid_signals():
    try:
        signal.signal(sig, signal.SIG_IGN)
    except (OSError, ValueError, RuntimeError):
        pass  # SIGKILL and SIGSTOP cannot be ignored (EINVAL)
print("ready", flush=True)
while True:
    time.sleep(0.01)
"""


@contextlib.contextmanager
def child_process(kind: str = "sleeper") -> Iterator[subprocess.Popen]:
    """Start a child process: ``sleeper`` blocks in the kernel, ``spinner`` burns CPU,
    ``stubborn`` sleeps and ignores every signal a process may ignore.

    The child is always killed and reaped on exit, so no zombie outlives the cell.
    """
    programs = {
        "sleeper": "import time\nwhile True: time.sleep(0.01)",
        "spinner": "while True: pass",
        "stubborn": STUBBORN,
    }
    if kind not in programs:
        raise InvalidOptionError(f"unknown child kind {kind!r}", f"use one of {sorted(programs)}")
    proc = subprocess.Popen([sys.executable, "-c", programs[kind]],
                            stdout=subprocess.PIPE if kind == "stubborn" else None)
    try:
        if proc.stdout is not None:  # its handlers are in place only once it says so
            proc.stdout.readline()
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def wait_for_state(pid: int, states: set[str], timeout: float = 5.0) -> str:
    """Poll until the scheduler reports one of ``states`` for ``pid``; return it."""
    deadline = time.monotonic() + timeout
    while True:
        state = psutil.Process(pid).status()
        if state in states or time.monotonic() > deadline:
            return state
        time.sleep(0.01)


def stop_and_continue(pid: int) -> tuple[str, str]:
    """Send SIGSTOP then SIGCONT: the states the kernel reports after each."""
    os.kill(pid, signal.SIGSTOP)
    stopped = wait_for_state(pid, {psutil.STATUS_STOPPED})
    os.kill(pid, signal.SIGCONT)
    resumed = wait_for_state(pid, {psutil.STATUS_RUNNING, psutil.STATUS_SLEEPING})
    return stopped, resumed


# ----------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class FirstTouch:
    """Memory mapped, then touched page by page: what the kernel did and when."""

    size: int
    page_size: int
    vms_growth: int  # virtual size grew at mmap() time ...
    rss_growth_mapped: int  # ... but resident memory barely moved
    rss_growth_touched: int  # touching the pages made them resident
    minor_faults: int  # one page fault per first touch

    @property
    def pages(self) -> int:
        return self.size // self.page_size


def first_touch(mib: int = 64) -> FirstTouch:
    """Map ``mib`` MiB of anonymous memory, then write one byte per page.

    Transparent huge pages are switched off for the mapping (``MADV_NOHUGEPAGE``)
    so that each 4 KiB page costs exactly one fault, as in the textbook.
    """
    if not 1 <= mib <= 1024:
        raise InvalidOptionError(f"touch size must be 1..1024 MiB, not {mib}", "pick e.g. 64")
    me = psutil.Process()
    size, page = mib << 20, mmap.PAGESIZE
    before = me.memory_info()
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        region.madvise(mmap.MADV_NOHUGEPAGE)
        mapped = me.memory_info()
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for offset in range(0, size, page):
            region[offset] = 1
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
        touched = me.memory_info()
    finally:
        region.close()
    return FirstTouch(size, page, mapped.vms - before.vms, mapped.rss - before.rss,
                      touched.rss - mapped.rss, faults)


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    path: str

    @property
    def size(self) -> int:
        return self.end - self.start


#: The regions of an address space a lesson points at; the rest (libraries, anonymous memory) is counted.
NOTABLE_REGIONS = ("[heap]", "[stack]", "[vdso]", "[vvar]", "[vsyscall]")


def notable_mappings(regions: list[Mapping], program: str) -> tuple[list[Mapping], dict[str, int]]:
    """The regions that matter in a lesson (``program``'s code, heap, stack, vDSO) and a count of the rest by kind.

    A Python process maps about 200 regions, mostly shared libraries; the
    kinds of the rest are "shared-library regions", "anonymous regions" and "other files".
    """
    shown, rest = [], {"shared-library regions": 0, "anonymous regions": 0, "other files": 0}
    for r in regions:
        if r.path in NOTABLE_REGIONS or (r.path.endswith(program) and "x" in r.perms):
            shown.append(r)
        elif ".so" in r.path:
            rest["shared-library regions"] += 1
        elif r.path.startswith("["):
            rest["anonymous regions"] += 1
        else:
            rest["other files"] += 1
    return shown, rest


#: How :func:`mapping_counts` reads each kind of :func:`notable_mappings`' rest.
MAPPING_KINDS = {"shared-library regions": N_("{count} shared-library regions"),
                 "anonymous regions": N_("{count} anonymous regions"), "other files": N_("{count} other files")}


def mapping_counts(rest: dict[str, int]) -> Phrase:
    """The rest of :func:`notable_mappings` as the learner reads it: "466 shared-library regions, …"."""
    return joined((Phrase(MAPPING_KINDS[kind], count=count) for kind, count in rest.items()), ", ")


def scheduler_policy(pid: int = 0) -> Phrase | int:
    """The scheduling policy of ``pid`` by name (SCHED_OTHER is Linux's fair scheduler); a number it does not know."""
    policy = os.sched_getscheduler(pid)
    if policy == os.SCHED_OTHER:
        return Phrase(N_("SCHED_OTHER (the fair scheduler)"))
    return policy


def memory_map(pid: int | None = None) -> list[Mapping]:
    """The process's virtual address space, region by region (``/proc/<pid>/maps``)."""
    rows = []
    for line in Path(f"/proc/{pid or os.getpid()}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        rows.append(Mapping(start, end, fields[1], fields[5] if len(fields) > 5 else "[anonymous]"))
    return rows


@dataclass(frozen=True)
class Overcommit:
    """The kernel promising more memory than it has."""

    mode: int  # /proc/sys/vm/overcommit_memory: 0 heuristic, 1 always, 2 strict
    physical: int
    promised: int  # virtual memory successfully mapped
    refused: str | None  # the error when the kernel said no


def overcommit(factor: float = 2.0, pieces: int = 4) -> Overcommit:
    """Map ``factor`` × physical RAM in ``pieces`` mappings without touching them.

    Guest RAM in KVM is ordinary process memory, so this is how a host "sells"
    more guest memory than it has: pages only become real when first touched.
    """
    mode = int(Path("/proc/sys/vm/overcommit_memory").read_text())
    physical = memory().total  # this host's memory: one definition for every notebook
    piece = int(physical * factor / pieces) // mmap.PAGESIZE * mmap.PAGESIZE
    maps: list[mmap.mmap] = []
    refused = None
    try:
        for _ in range(pieces):
            maps.append(mmap.mmap(-1, piece, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS))
    except OSError as exc:
        refused = exc.strerror
    finally:
        promised = sum(len(m) for m in maps)
        for m in maps:
            m.close()
    return Overcommit(mode, physical, promised, refused)


# ----------------------------------------------------------------------------- network


@dataclass(frozen=True)
class SocketSeen:
    """A loopback conversation, and the kernel's own table entry for the listener."""

    port: int
    listener_status: str  # as the kernel's TCP table reports it
    listener_pid: int | None
    echoed: bytes


def loopback_conversation(message: bytes = b"hello, kernel") -> SocketSeen:
    """Listen on 127.0.0.1, connect, send, receive — then ask the kernel's socket table.

    The bytes never reach a network card: the kernel's network stack delivers
    them on the loopback interface, and it keeps the table ``ss`` and
    ``/proc/net/tcp`` show.
    """
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        ours = [c for c in psutil.net_connections(kind="tcp4") if c.laddr and c.laddr.port == port]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            peer, _ = server.accept()
            with peer:
                client.sendall(message)
                peer.sendall(peer.recv(len(message)))
                echoed = client.recv(len(message))
    entry = ours[0] if ours else None
    return SocketSeen(port, entry.status if entry else "not listed", entry.pid if entry else None, echoed)


# ----------------------------------------------------------------------------- system calls


@dataclass(frozen=True)
class CallCost:
    """Nanoseconds per call of a system call vs a call that stays in user space."""

    syscall_ns: float
    function_ns: float
    repeats: int

    @property
    def ratio(self) -> float:
        return self.syscall_ns / self.function_ns


#: Timings of each function in :func:`syscall_cost`.  On a busy host the scheduler interrupts some timings (a
#: core shared by a dozen runnable threads gives each a few milliseconds at a time); a timing of a few thousand
#: calls fits between two interruptions, and the best of many is one that ran undisturbed.
CALL_TIMINGS = 50


def time_in_turns(funcs: Sequence[Callable[[], object]], n: int, timings: int = CALL_TIMINGS) -> list[float]:
    """Nanoseconds per call of each of ``funcs``: the best of ``timings`` timings of ``n`` calls.

    The functions take turns, timing by timing, so that a busy moment of the host falls on each of them alike:
    timed one after the other, five timings of 100,000 calls each, a loaded host (a Slurm student's CPU quota,
    the test suite beside it) once made ``abs()`` look slower than a system call.
    """
    best = [float("inf")] * len(funcs)
    for _timing in range(timings):
        for i, func in enumerate(funcs):
            t0 = time.perf_counter_ns()
            for _call in range(n):
                func()
            best[i] = min(best[i], (time.perf_counter_ns() - t0) / n)
    return best


def syscall_cost(n: int = 2_000) -> CallCost:
    """Time ``getppid()`` (a real system call every time) against ``abs()`` (no kernel entry), ``n`` calls per
    timing (:func:`time_in_turns`).

    Both are C functions called from Python the same way, so the Python
    overhead is common to both and the difference is the trip into the kernel
    and back.
    """
    if not 1_000 <= n <= 10_000_000:
        raise InvalidOptionError(f"repeats must be 1,000..10,000,000, not {n}")
    syscall_ns, function_ns = time_in_turns([os.getppid, functools.partial(abs, -1)], n)
    return CallCost(syscall_ns, function_ns, n)


# ----------------------------------------------------------------------------- kernel image


def kernel_symbols(names: set[str]) -> dict[str, str]:
    """Which of ``names`` the running kernel has, and the module each belongs to.

    ``/proc/kallsyms`` lists every symbol of the kernel *and* its modules in
    one table: in a monolithic kernel a driver's functions live in the same
    address space as the scheduler's.  Built-in code is tagged ``[kernel]``.
    """
    found: dict[str, str] = {}
    with open("/proc/kallsyms") as table:
        for line in table:
            parts = line.split()
            if len(parts) >= 3 and parts[2] in names:
                found[parts[2]] = parts[3].strip("[]") if len(parts) > 3 else "kernel"
    return found


@dataclass(frozen=True)
class KernelThread:
    """One of the kernel's own threads (``ps`` shows them in [brackets])."""

    pid: int
    name: str
    user_memory: bool  # /proc/<pid>/status has VmSize: a user-space address space of its own


def kernel_threads() -> list[KernelThread]:
    """The kernel's own threads: ``kthreadd`` (pid 2) and its children.

    They run kernel code only, in the kernel's address space, so none should
    have a user-space memory map (``/proc/<pid>/status`` shows no ``Vm*``
    lines; that file is readable by every user).  Empty where pid 2 is not
    visible (a PID namespace, such as a container's).  Threads that end
    while being read (kworkers come and go) are left out.
    """
    found = []
    for proc in psutil.process_iter(["ppid", "name"]):
        if proc.pid != 2 and proc.info["ppid"] != 2:
            continue
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        found.append(KernelThread(proc.pid, proc.info["name"], "\nVmSize:" in status))
    return found


@dataclass(frozen=True)
class ModuleLicense:
    """A kernel module's license, as far as this host lets anyone read it."""

    module: str
    license: str | None  # e.g. "GPL"; None when this host keeps no record of it
    source: str  # where it was read, or why it could not be
    proprietary_loaded: bool | None  # taint flag P (/proc/sys/kernel/tainted bit 0): non-GPL code in the kernel


def module_license(name: str = "kvm") -> ModuleLicense:
    """``name``'s MODULE_LICENSE: ``modinfo -F license`` for a module, modules.builtin.modinfo when built in.

    Built-in code keeps its license only in that file (the kernel exposes no
    license in /sys/module); where neither is available the license is
    unknown, and the taint flag still says whether any proprietary code was
    ever loaded into this kernel.
    """
    tainted_file = Path("/proc/sys/kernel/tainted")
    proprietary = bool(int(tainted_file.read_text()) & 1) if tainted_file.exists() else None
    if shutil.which("modinfo"):
        out = subprocess.run(["modinfo", "-F", "license", name], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return ModuleLicense(name, out.stdout.strip(), f"modinfo -F license {name}", proprietary)
    builtin = Path(f"/lib/modules/{os.uname().release}/modules.builtin.modinfo")
    if builtin.exists():
        for entry in builtin.read_bytes().split(b"\0"):
            if entry.startswith(f"{name}.license=".encode()):
                return ModuleLicense(name, entry.split(b"=", 1)[1].decode(), str(builtin), proprietary)
    return ModuleLicense(name, None, Phrase(N_("no modinfo and no {path} on this host"), path=builtin), proprietary)
