"""L1: a QEMU/TCG machine whose emulated CPU has AMD-V, running one command of the host's.

QEMU's TCG emulates AMD's SVM with nested paging (``-cpu qemu64,+svm,+npt``),
so the lab's cloud kernel loads the ordinary ``kvm_amd`` in it and gets a
``/dev/kvm`` backed by (emulated) hardware virtualization: the hardware-KVM
path of the lab, which no PVM host (no vmx/svm) can run, runs for real.
``virtiofsd`` shares the host's root read-only (the same checkout, venv and
image cache), ``/nested-init`` (``init.sh``) puts a tmpfs overlay on it and
runs the job of :mod:`labkit.nested.job`.

Serial lines: ttyS0 is the console (kernel messages and init's
``LABKIT-NESTED`` lines), ttyS1/ttyS2 carry the command's stdout/stderr
(an interactive shell: ttyS1 alone, both ways).  QEMU connects them to
unix sockets in this run's scratch dir, which threads here relay.

Everything started is released on success, error and Ctrl-C (context
managers), on interpreter exit (``runtime.release_at_exit``) and when labkit
is killed outright (QEMU and virtiofsd die with their parent: PDEATHSIG);
names carry ``runtime.prefix()`` and the pid, so ``labkit cleanup`` removes
what a killed run left (its scratch dirs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import select
import shutil
import signal
import socket
import subprocess
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit import host, images, qemu, runtime
from labkit.errors import GuestTimeoutError, InvalidOptionError, MissingToolError
from labkit.host.tsc import HOST_TSC_PARAMETER
from labkit.nested import initramfs, job, modules, watch
from labkit.nested.errors import CannotRunHereError, NestedError

#: The emulated CPU: QEMU's baseline model plus AMD-V (svm) with nested paging (npt), 1 GiB pages, and
#: the x86-64-v2 level (cx16, popcnt, SSSE3, SSE4.x) that current Python wheels (numpy) require: without
#: it numpy dies of an invalid opcode in L1.  Its own model name, so that L1 (a host to the lab) and the
#: guests it boots (QEMU's qemu64) do not present the same CPU by coincidence.
CPU = "qemu64,+svm,+npt,+pdpe1gb,+cx16,+popcnt,+ssse3,+sse4.1,+sse4.2,model-id=KVM Lab emulated AMD-V CPU"
#: Where Debian's qemu-system-common (7.2) puts virtiofsd; newer systems ship it in $PATH or /usr/libexec.
VIRTIOFSD_PATHS = ("/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd")
#: L1 holds the command's writes (tmpfs overlay) and its own guests: below this, Python and a guest don't fit.
MIN_MEMORY_MIB = 1024
DEFAULT_MEMORY_MIB = 2048
#: L1's vCPUs unless asked.  One: three times on a loaded host a 2-vCPU L1 stopped making progress while its
#: QEMU kept burning CPU — in CI, in the raw VMM's test inside L1, and in notebook 04's demo under nbval (CI-like
#: run 43, beside the suite's four workers: over 8 minutes) — most likely a livelock between the emulated vCPUs
#: around nested SVM (docs/developing.md).  One vCPU has no cross-vCPU wait; the lab's own guests in L1 have one.
DEFAULT_VCPUS = 1

#: From launch to /nested-init's READY: measured 3–4.5 s on an idle 2-core host; generous under load.
READY_TIMEOUT_S = 90.0
_LINE = re.compile(r"LABKIT-NESTED (READY|FAIL[^\r\n]*|EXIT (\d+))")

Output = Callable[[bytes], None]


@dataclass(frozen=True)
class NestedResult:
    """How a command ran in L1: its exit status and where the time went."""

    status: int
    ready_s: float  # QEMU launch → L1's init about to run the command (modules loaded, root mounted)
    command_s: float  # the command itself, as seen from the host
    total_s: float  # launch → QEMU gone
    kernel_release: str
    stalls: tuple[watch.Look, ...] = ()  # each time L1 was found stopped for good and nudged (labkit.nested.watch)


def _write_to(fd: int) -> Output:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    return write


# --------------------------------------------------------------------------- host checks


def virtiofsd_path() -> Path:
    """The virtiofsd binary, or a clear error naming the package."""
    for candidate in (*VIRTIOFSD_PATHS, shutil.which("virtiofsd")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise MissingToolError("virtiofsd is not installed: L1 sees the host's files through it",
                           "sudo apt-get install qemu-system-common (Debian 12; newer: the virtiofsd package)")


def check_host(memory_mib: int, vcpus: int) -> None:
    """Everything that can be checked before anything starts: CPU architecture, programs, memory."""
    if platform.machine() != "x86_64":
        raise CannotRunHereError(f"this host is {platform.machine()}, not x86-64: the emulated AMD-V machine runs the "
                          "lab's x86-64 kernel and this host's x86-64 programs inside",
                          "run it on an x86-64 host")
    qemu.qemu_binary()
    virtiofsd_path()
    if not isinstance(vcpus, int) or not 1 <= vcpus <= 8:
        raise InvalidOptionError(f"vcpus={vcpus!r}: 1 to 8 (TCG runs one host thread per vCPU)",
                                 f"this host has {os.cpu_count()} CPUs; {DEFAULT_VCPUS} is the default")
    available = host.memory().available // 2**20
    if not isinstance(memory_mib, int) or memory_mib < MIN_MEMORY_MIB:
        raise InvalidOptionError(f"--memory {memory_mib}: L1 needs at least {MIN_MEMORY_MIB} MiB (its files "
                                 "written go to RAM, and it runs Python and guests)",
                                 f"use --memory {DEFAULT_MEMORY_MIB} (the default)")
    if memory_mib > available:
        raise CannotRunHereError(f"too little memory: L1 asks for {memory_mib} MiB, this host has {available} MiB "
                          "available", f"free memory, or use --memory {max(MIN_MEMORY_MIB, available // 2)} "
                          f"(at least {MIN_MEMORY_MIB})")


# --------------------------------------------------------------------------- virtiofsd


class Virtiofsd:
    """``virtiofsd`` sharing the host's ``/`` on a socket, as the invoking user, dying with labkit.

    It runs with the caller's own uid: L1 can never read more than its user
    can.  QEMU 7.2's C virtiofsd needs root for its sandbox (``chroot``;
    the ``namespace`` default fails here with pivot_root EBUSY), so for an
    unprivileged user it fails to start, and says so.
    """

    def __init__(self, socket_path: Path, log: Path) -> None:
        self.socket_path, self.log = socket_path, log
        self._proc: subprocess.Popen | None = None
        self._token: int | None = None

    def start(self, timeout: float = 10.0) -> Virtiofsd:
        argv = [str(virtiofsd_path()), f"--socket-path={self.socket_path}", "-o", "source=/",
                "-o", "cache=auto", "-o", "sandbox=chroot"]
        with open(self.log, "wb") as log:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, preexec_fn=qemu.die_with_parent)
        self._token = runtime.release_at_exit(self.stop)
        deadline = time.monotonic() + timeout
        while not self.socket_path.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                said = self.log.read_text(errors="replace").strip().splitlines()[-3:]
                self.stop()
                needs = ("it needs root here (QEMU 7.2's C virtiofsd sandboxes itself with chroot); run as root, "
                         "or install the Rust virtiofsd, which runs unprivileged" if os.geteuid() != 0
                         else "check that nothing else holds the socket, and read its message")
                raise CannotRunHereError(f"virtiofsd did not start: {' / '.join(said) or 'no message'}", needs)
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Kill it (idempotent); virtiofsd also exits by itself when QEMU disconnects."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if proc is not None:
            proc.wait()
        if self._token is not None:
            runtime.forget(self._token)
            self._token = None


# --------------------------------------------------------------------------- serial relays


class _Relay(threading.Thread):
    """Accepts QEMU's connection on a unix socket and copies the guest's bytes to ``output``
    (and, for a terminal, the host's stdin to the guest)."""

    def __init__(self, path: Path, output: Output, stdin: int | None = None) -> None:
        super().__init__(name=f"nested-relay-{path.name}", daemon=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.output, self.stdin = output, stdin
        #: Set once L1 has its serial line open: keys typed earlier would be lost on a UART nobody reads.
        self.input_open = threading.Event()
        self._closed = threading.Event()

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            while not self._closed.is_set():
                stdin = self.stdin if self.input_open.is_set() else None
                ready, _, _ = select.select([conn] + ([stdin] if stdin is not None else []), [], [], 0.2)
                if conn in ready:
                    data = conn.recv(65536)
                    if not data:
                        return
                    self.output(data)
                if stdin is not None and stdin in ready:
                    data = os.read(stdin, 4096)
                    if data:
                        conn.sendall(data)
                    else:  # end of input (a pipe): nothing more to pass on
                        self.stdin = None

    def close(self) -> None:
        """Stop now (the normal path has joined it after QEMU exited and the last bytes came)."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes an accept() QEMU never answered
        self.listener.close()
        if self.is_alive():
            self.join(timeout=5)


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """The host terminal passes every key (Ctrl-C included) to L1's shell; restored on the way out."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


# --------------------------------------------------------------------------- the run


def prepare() -> tuple[images.Kernel, Path]:
    """L1's kernel and initramfs, its modules fetched from the kernel's package once and cached.

    Setup calls it (``labkit nested prepare``) so that a learner's first L1 boots without the network.
    """
    kernel = images.find_kernel(progress=False)
    return kernel, initramfs.build(modules.kernel_modules(kernel))


async def run(argv: Sequence[str], *, memory_mib: int = DEFAULT_MEMORY_MIB, vcpus: int = DEFAULT_VCPUS,
              timeout: float = 1800.0, stdout: Output | None = None, stderr: Output | None = None,
              interactive: bool = False, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> NestedResult:
    """Boot L1, run ``argv`` in it as the caller (uid/gid, ``cwd``, lab environment), return its status.

    The command's stdout/stderr stream to ``stdout``/``stderr`` (default:
    this process's fds 1 and 2) while it runs.  ``interactive``: one
    terminal both ways on this process's stdin/stdout (``labkit nested shell``).
    """
    check_host(memory_mib, vcpus)
    cwd = Path.cwd() if cwd is None else cwd
    environment = job.environment(os.environ if env is None else env)
    job.resolve(argv, environment, cwd)
    terminal = os.get_terminal_size(0) if interactive and os.isatty(0) else None
    stdout, stderr = stdout or _write_to(1), stderr or _write_to(2)
    with runtime.scratch("nested") as scratch:
        # virtiofsd first: whether it can run as this user is the likeliest failure, and the cheapest to find
        with contextlib.ExitStack() as release:
            release.callback(Virtiofsd(scratch / "vfs.sock", scratch / "virtiofsd.log").start().stop)
            kernel, initrd = prepare()
            release.enter_context(images.reading(images.user_cache()))  # L1 reads it: no prune meanwhile
            (scratch / "job.sh").write_text(job.script(
                argv, environment, cwd, uid=os.getuid(), gid=os.getgid(),
                terminal=(terminal.lines, terminal.columns) if terminal else (24, 80) if interactive else None))
            relays = ([_Relay(scratch / "term.sock", stdout, stdin=0)] if interactive
                      else [_Relay(scratch / "out.sock", stdout), _Relay(scratch / "err.sock", stderr)])
            for relay in relays:
                release.callback(relay.close)
                relay.start()
            serials = [arg for i, relay in enumerate(relays)
                       for arg in ("-chardev", f"socket,id=s{i + 1},path={relay.listener.getsockname()}",
                                   "-serial", f"chardev:s{i + 1}")]
            config = qemu.MachineConfig(
                machine="q35", accel="tcg", cpu=CPU, memory_mib=memory_mib, vcpus=vcpus,
                kernel=kernel.vmlinux or kernel.path, initrd=initrd,
                append=f"{images.BASE_CMDLINE} rdinit={initramfs.RDINIT} labkit.job={scratch / 'job.sh'}"
                       + (" labkit.tty=1" if interactive else "") + _tsc_parameters(),
                extra_args=("-object", f"memory-backend-memfd,id=mem,size={memory_mib}M,share=on",
                            "-numa", "node,memdev=mem", "-nic", "none",
                            "-chardev", f"socket,id=vfs,path={scratch / 'vfs.sock'}",
                            "-device", "vhost-user-fs-pci,chardev=vfs,tag=host", *serials))
            if interactive:
                release.enter_context(_raw_terminal(0))
            return await _supervise(config, relays, timeout, kernel.release)


def _tsc_parameters() -> str:
    """L1's TSC is this host's (TCG's RDTSC reads the host counter), but TCG cannot offer ``invtsc`` to say
    so.  Where this host's frequency is known, L1's kernel takes it (no calibration against an emulated
    timer) and the lab inside reads it (:data:`labkit.host.tsc.HOST_TSC_PARAMETER`): its TCG guests boot
    with ``tsc_early_khz`` on ``microvm``, and its payload loops are timed by the TSC."""
    tsc = host.tsc_frequency()
    return f" tsc_early_khz={tsc.khz} {HOST_TSC_PARAMETER}={tsc.khz}" if tsc else ""


async def _supervise(config: qemu.MachineConfig, relays: list[_Relay], timeout: float,
                     release: str) -> NestedResult:
    async with qemu.QemuMachine(config, name="nested") as vm:
        assert vm.launched_at is not None
        await vm.wait_for(_LINE, READY_TIMEOUT_S)
        ready_at = _seen(vm)
        first = _LINE.findall(vm.console)[0][0]
        if first.startswith("FAIL"):
            await _fail(vm, first.removeprefix("FAIL ").strip())
        for relay in relays:
            relay.input_open.set()
        looks: list[watch.Look] = []
        watcher = asyncio.ensure_future(watch.watch(vm, looks))
        try:
            await vm.wait_for(re.compile(r"LABKIT-NESTED (EXIT \d+|FAIL)"), timeout)
        except GuestTimeoutError:
            seen = "".join(f"\nat {look.at_s:g} s: {look.diagnosis}; nudged with a key press" for look in looks
                           if look.nudged)
            if looks:  # what L1's vCPU and APIC showed the last time it sat idle: where it waits
                seen += f"\nL1 idle at {looks[-1].at_s:g} s:\n{looks[-1].evidence}"
            raise NestedError(f"the command did not end within {timeout:g} s inside L1: L1 was stopped "
                              f"(its output so far is above).{seen}\nL1's console (kernel messages) ends:\n"
                              f"{vm.console_tail(15)}",
                              "give it more time (labkit nested run --timeout S), or find where it waits: "
                              "labkit nested shell") from None
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        last = _LINE.findall(vm.console)[-1]
        done_at = time.monotonic()
        if not last[1]:
            await _fail(vm, last[0].removeprefix("FAIL ").strip())
        await vm.wait_exit(30)
        for relay in relays:  # QEMU is gone: its ends of the serial sockets are closed, so each relay reads
            relay.join(timeout=60)  # to their end soon (the bound is for a host too starved to schedule it)
        assert vm.exited_at is not None
        return NestedResult(int(last[1]), ready_at - vm.launched_at, done_at - ready_at,
                            vm.exited_at - vm.launched_at, release,
                            tuple(look for look in looks if look.nudged))


def _seen(vm: qemu.QemuMachine) -> float:
    at = vm.seen_at(_LINE)
    assert at is not None
    return at


async def _fail(vm: qemu.QemuMachine, what: str) -> None:
    with contextlib.suppress(Exception):
        await vm.wait_exit(10)
    raise NestedError(f"L1 could not set itself up: {what}. Console tail:\n{vm.console_tail(12)}",
                      "read the kernel's words above; `labkit image build --force` rebuilds the images")


def run_sync(argv: Sequence[str], **options: object) -> NestedResult:
    """:func:`run` for scripts and the CLI (no event loop of their own)."""
    return asyncio.run(run(argv, **options))  # type: ignore[arg-type]


__all__ = ["CPU", "NestedResult", "Virtiofsd", "check_host", "run", "run_sync", "virtiofsd_path"]
