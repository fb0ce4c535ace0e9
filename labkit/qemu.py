"""QEMU as a Python object: typed options → command line, launch, console, QMP, cleanup.

:class:`MachineConfig` holds typed options and validates them (clear errors
before QEMU ever runs); :class:`Machine` launches ``qemu-system-x86_64``
without a shell, in its own process group, with the serial console and the
QMP monitor on socket pairs (no paths to race on), reads the console in a
thread that timestamps every chunk, and talks QMP through the ``qemu.qmp``
library (asyncio: a notebook can ``await`` it).  The process group is killed
on error, timeout, ``KeyboardInterrupt`` and interpreter exit.

:func:`boot` boots the tiny guest of :mod:`labkit.images` and returns what
the guest reported plus when each phase was reached (:class:`BootTimes`).

The accelerator: :func:`choose_accel` picks KVM only where it can run the
guest — for Linux that needs hardware virtualization (VT-x/AMD-V); on hosts
where KVM exists but cannot boot Linux (nested PVM, see ``labkit doctor``)
it picks TCG, QEMU's emulator, and says why.  ``-cpu host``/``max`` are only
used when asked for, and ``host`` only with hardware KVM.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from qemu.qmp import QMPClient
from qemu.qmp.error import QMPError

from labkit import host, images, runtime
from labkit.errors import InvalidOptionError, KvmUnavailableError, LabkitError, MissingToolError

QEMU = "qemu-system-x86_64"
Accel = Literal["auto", "kvm", "tcg"]
Purpose = Literal["linux", "payload"]

#: The isa-debug-exit device: a write of V to its port makes QEMU exit with status (V << 1) | 1.
DEBUG_EXIT_PORT = 0xF4
DEBUG_EXIT_DEVICE = f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"


class QemuError(LabkitError):
    """Something went wrong with a QEMU machine."""


class LaunchError(QemuError):
    """QEMU did not start: carries the command line and QEMU's own output."""

    def __init__(self, what: str, fix: str | None, command_line: list[str], output: str) -> None:
        super().__init__(f"{what}\ncommand: {shlex.join(command_line)}\nQEMU said:\n{output.strip() or '(nothing)'}",
                         fix)
        self.command_line = command_line
        self.output = output


class BootTimeoutError(QemuError, TimeoutError):
    """The guest did not reach the expected point in time; carries the console tail."""


class GuestStoppedError(QemuError):
    """QEMU exited before the guest got where it should (a panic, a triple fault)."""


class GuestPanicError(GuestStoppedError, images.GuestPanicError):
    """The guest's kernel panicked (QEMU then exits: ``panic=-1`` and ``-no-reboot``)."""


class KvmCannotBootLinuxError(QemuError):
    """KVM works here, but not well enough to boot a Linux guest."""


# --------------------------------------------------------------------------- the accelerator


@dataclass(frozen=True)
class AccelChoice:
    """Which accelerator QEMU uses, what was asked for, and why."""

    name: Literal["kvm", "tcg"]
    requested: Accel
    reason: str

    @property
    def label(self) -> str:
        return "KVM (the CPU runs guest code)" if self.name == "kvm" else "TCG (QEMU translates guest code)"


def choose_accel(requested: Accel = "auto", purpose: Purpose = "linux",
                 report: host.HostReport | None = None) -> AccelChoice:
    """KVM where it can run the guest, else TCG — with the reason, from :mod:`labkit.host`'s verdict.

    ``purpose="linux"`` needs KVM that boots Linux (hardware virtualization);
    ``purpose="payload"`` (a bare-metal program) needs only a usable ``/dev/kvm``.
    """
    if requested not in ("auto", "kvm", "tcg"):
        raise InvalidOptionError(f"accel must be 'auto', 'kvm' or 'tcg', not {requested!r}",
                                 "use accel='auto' to let labkit choose")
    if requested == "tcg":
        return AccelChoice("tcg", requested, "TCG was asked for: QEMU translates every guest instruction")
    verdict = (report or host.inspect()).verdict
    if not verdict.usable:
        why = f"{verdict.label}: " + "; ".join(verdict.reasons)
        if requested == "kvm":
            raise KvmUnavailableError(f"KVM was asked for, but this host has {why}",
                                      verdict.fix or "use accel='tcg' (or 'auto')")
        return AccelChoice("tcg", requested, f"no usable KVM ({why}), so QEMU emulates with TCG")
    if purpose == "payload" or verdict.boots_linux:
        return AccelChoice("kvm", requested, f"{verdict.label}: guest code runs on the CPU itself")
    why = (f"{verdict.label}: the CPU offers no VT-x/AMD-V, so a Linux guest's kernel would run through "
           "KVM's instruction emulator, which stops on instructions it lacks")
    if requested == "kvm":
        raise KvmCannotBootLinuxError(f"KVM cannot boot a Linux guest on this host ({why})",
                                      "use accel='tcg' or 'auto'; a bare-metal payload does run under KVM "
                                      "here (labkit.payload)")
    return AccelChoice("tcg", requested, f"{why}; QEMU emulates with TCG instead")


# --------------------------------------------------------------------------- options


def qemu_binary(name: str = QEMU) -> str:
    """Path of the QEMU system emulator, or a :class:`MissingToolError` saying what to install."""
    return runtime.require_program(name, "qemu-system-x86")


def qemu_version(binary: str | None = None) -> str:
    """``QEMU emulator version …`` as the installed binary prints it."""
    out = subprocess.run([binary or qemu_binary(), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


@functools.lru_cache(maxsize=8)
def _help_names(binary: str, option: str) -> frozenset[str]:
    out = subprocess.run([binary, option, "help"], capture_output=True, text=True, check=False).stdout
    names = set()
    for line in out.splitlines():
        words = line.split()
        if option == "-cpu" and len(words) >= 2 and words[0] == "x86":
            names.add(words[1])
        elif option == "-machine" and words and line[:1] not in (" ", "") and not line.startswith("Supported"):
            names.add(words[0])
    return frozenset(names)


def machine_types(binary: str | None = None) -> frozenset[str]:
    """Machine types this QEMU offers (``pc``, ``q35``, ``microvm``, ...)."""
    return _help_names(binary or qemu_binary(), "-machine")


def cpu_models(binary: str | None = None) -> frozenset[str]:
    """CPU models this QEMU can emulate (``qemu64``, ``Skylake-Client``, ..., ``host``, ``max``)."""
    return _help_names(binary or qemu_binary(), "-cpu")


@dataclass(frozen=True)
class MachineConfig:
    """Typed options of one QEMU machine; :meth:`argv` turns them into a command line."""

    accel: Literal["kvm", "tcg"] = "tcg"
    machine: str = "pc"
    cpu: str | None = None  # None: QEMU's default model (qemu64)
    memory_mib: int = 128
    vcpus: int = 1
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    bios: Path | None = None
    devices: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    tb_size_mib: int | None = None  # TCG's translation cache
    binary: str = QEMU

    def validate(self, report: host.HostReport | None = None) -> None:
        """Raise :class:`InvalidOptionError` (or a missing-file error) for anything QEMU would reject."""
        binary = qemu_binary(self.binary)
        if self.accel not in ("kvm", "tcg"):
            raise InvalidOptionError(f"accel must be 'kvm' or 'tcg' here, not {self.accel!r}",
                                     "resolve 'auto' with labkit.qemu.choose_accel()")
        if self.machine.split(",")[0] not in machine_types(binary):
            raise InvalidOptionError(f"QEMU has no machine type {self.machine!r}",
                                     f"use one of: pc, q35, microvm (all: {QEMU} -machine help)")
        images.check_guest(self.memory_mib, self.vcpus, self.append,
                           max_memory_mib=host.memory().total // 2**20)
        if self.cpu is not None:
            model = self.cpu.split(",")[0]
            if model not in cpu_models(binary):
                raise InvalidOptionError(f"QEMU cannot emulate a CPU model {model!r}",
                                         f"e.g. qemu64, Skylake-Client, EPYC (all: {QEMU} -cpu help)")
            if model == "host" and (self.accel != "kvm" or (report or host.inspect()).verdict.kind != "hardware"):
                raise InvalidOptionError("-cpu host passes the real CPU through: it needs hardware KVM "
                                         "(on nested/PVM KVM QEMU aborts with 'failed to set MSR')",
                                         "leave cpu unset (QEMU's qemu64) or name a model such as Skylake-Client")
            if model == "max" and self.accel == "kvm" and (report or host.inspect()).verdict.kind != "hardware":
                raise InvalidOptionError("-cpu max under KVM needs hardware virtualization (here QEMU aborts)",
                                         "leave cpu unset, or use accel='tcg' with cpu='max'")
        for name in ("kernel", "initrd", "bios"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                what = "is not a regular file" if Path(path).exists() else "does not exist"
                raise MissingToolError(f"the {name} file {path} {what}",
                                       "build the guest image with `labkit image build`" if name != "bios"
                                       else "build the payload with labkit.payload.build()")
        if self.initrd and not self.kernel:
            raise InvalidOptionError("an initrd needs a kernel", "pass kernel= as well")
        if self.append is not None and not self.kernel:
            raise InvalidOptionError("append (the kernel command line) needs a kernel", "pass kernel= as well")
        if self.tb_size_mib is not None and (self.accel != "tcg" or self.tb_size_mib < 1):
            raise InvalidOptionError("tb_size_mib is TCG's translation cache size: TCG only, ≥ 1",
                                     "leave it unset for QEMU's default")

    def argv(self, name: str, console_fd: int, qmp_fd: int) -> list[str]:
        """The command line (no shell): console and QMP on already-connected sockets."""
        accel = self.accel + (f",tb-size={self.tb_size_mib}" if self.tb_size_mib else "")
        args = [qemu_binary(self.binary), "-name", f"{name},process={name}",
                "-machine", self.machine, "-accel", accel, "-m", str(self.memory_mib), "-smp", str(self.vcpus),
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-S",
                "-chardev", f"socket,id=console,fd={console_fd}", "-serial", "chardev:console",
                "-chardev", f"socket,id=qmp,fd={qmp_fd}", "-mon", "chardev=qmp,mode=control"]
        if self.cpu:
            args += ["-cpu", self.cpu]
        if self.bios:
            args += ["-bios", str(self.bios)]
        if self.kernel:
            args += ["-kernel", str(self.kernel)]
        if self.initrd:
            args += ["-initrd", str(self.initrd)]
        if self.append is not None:
            args += ["-append", self.append]
        for device in self.devices:
            args += ["-device", device]
        return args + list(self.extra_args)


# --------------------------------------------------------------------------- the machine


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL QEMU if labkit's process dies (even by SIGKILL).

    QEMU runs in its own session (so a Ctrl-C in a terminal reaches labkit,
    which then cleans up in order), so nothing else would stop it if the
    notebook kernel were killed outright.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass(frozen=True)
class ConsoleChunk:
    at: float  # time.monotonic() when it arrived
    end: int  # length of the console text once it arrived


class Machine:
    """One running ``qemu-system-x86_64``: console, QMP, guaranteed cleanup.

    Use it as ``async with Machine(config) as vm:`` or ``vm = await
    Machine(config).start()`` … ``await vm.stop()``; a machine left running
    is killed when the interpreter (or notebook kernel) exits.
    """

    def __init__(self, config: MachineConfig, name: str = "vm", nonce: str | None = None) -> None:
        """``nonce``: put this token into the guest's initramfs (:func:`labkit.images.with_nonce`)."""
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,40}", name):
            raise InvalidOptionError(f"machine name {name!r}: lowercase letters, digits, '_', '.', '-' only",
                                     "e.g. name='tiny'")
        self.config = config
        self.name = f"{runtime.prefix()}{name}-{os.getpid()}-{id(self) % 100000}"
        self.command_line: list[str] = []
        self.launched_at: float | None = None
        self.exited_at: float | None = None
        self.returncode: int | None = None
        self._raw = bytearray()
        self._chunks: list[ConsoleChunk] = []
        self._listeners: list[Callable[[str], None]] = []
        self._wakers: set[Callable[[], None]] = set()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._console: socket.socket | None = None
        self._qmp_sock: socket.socket | None = None
        self._qmp: QMPClient | None = None
        self._reader: threading.Thread | None = None
        self._scratch: Path | None = None
        self._exit_token: int | None = None
        self.nonce = nonce

    # ---- lifecycle

    async def start(self, qmp_timeout: float = 20.0, paused: bool = False) -> Machine:
        """Launch QEMU and connect QMP, then let the guest run (unless ``paused``).

        QEMU starts with its vCPUs stopped (``-S``, as libvirt does), so QMP is
        connected before the guest can do anything, even finish and exit.  On
        any failure nothing is left running.
        """
        if self._proc is not None:
            raise QemuError(f"{self.name} was already started", "create a new Machine")
        self.config.validate()
        console, console_child = socket.socketpair()
        qmp, qmp_child = socket.socketpair()
        self._console, self._qmp_sock = console, qmp
        self._scratch = runtime.scratch_dir("qemu")
        if self.nonce and self.config.initrd:
            try:
                self.config = replace(self.config, initrd=images.with_nonce(self.config.initrd, self._scratch,
                                                                            self.nonce))
            except BaseException:
                self.kill()
                raise
        log = open(self._scratch / "qemu.log", "w+b")
        self.command_line = self.config.argv(self.name, console_child.fileno(), qmp_child.fileno())
        try:
            self.launched_at = time.monotonic()
            self._proc = subprocess.Popen(self.command_line, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          pass_fds=(console_child.fileno(), qmp_child.fileno()),
                                          preexec_fn=_die_with_parent)
            self._exit_token = runtime.release_at_exit(self.kill)
        except BaseException:
            self.kill()
            raise
        finally:  # QEMU holds its own copies now; ours would keep the sockets open after it exits
            console_child.close()
            qmp_child.close()
            log.close()
        self._reader = threading.Thread(target=self._read_console, name=f"{self.name}-console", daemon=True)
        self._reader.start()
        try:
            self._qmp = QMPClient(self.name)
            await asyncio.wait_for(self._qmp.connect(qmp), qmp_timeout)
        except (QMPError, OSError, EOFError, asyncio.TimeoutError) as exc:
            output = self.qemu_output()
            self.kill()
            raise LaunchError(f"QEMU did not start ({type(exc).__name__}: {exc})",
                              "read QEMU's message above; check the options", self.command_line, output) from None
        except BaseException:
            self.kill()
            raise
        if not paused:
            await self._resume()
        return self

    async def _resume(self) -> None:
        """QMP ``cont``.  A guest may finish and QEMU exit before the reply: that is a success."""
        try:
            await self.qmp("cont")
        except (QMPError, OSError, EOFError, QemuError) as exc:
            if not await self._until(lambda: self.exited_at is not None, 5.0):
                await self.stop(timeout=0.5)
                raise QemuError(f"QEMU did not resume the guest ({type(exc).__name__}: {exc})",
                                "try again; if it persists, run the command line by hand") from None
        except BaseException:
            await self.stop(timeout=0.5)
            raise

    def _read_console(self) -> None:
        assert self._console is not None and self._proc is not None
        while True:
            try:
                data = self._console.recv(65536)
            except OSError:
                break
            if not data:
                break
            now = time.monotonic()
            with self._lock:
                self._raw += data
                self._chunks.append(ConsoleChunk(now, len(self._raw)))
                listeners = list(self._listeners)
            text = data.decode("utf-8", "replace")
            for listener in listeners:
                try:
                    listener(text)
                except Exception:  # noqa: BLE001 - a broken view must not stop the console
                    pass
            self._wake()
        self.returncode = self._proc.wait()
        self.exited_at = time.monotonic()
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    async def stop(self, timeout: float = 5.0) -> int | None:
        """Ask QEMU to quit (QMP ``quit``), wait briefly, then make sure it is gone."""
        if self._qmp is not None and self.running:
            try:
                await asyncio.wait_for(self._qmp.execute("quit"), timeout)
                await self.wait_exit(timeout)
            except (QMPError, OSError, asyncio.TimeoutError, QemuError):
                pass
        await self._disconnect()
        self.kill()
        return self.returncode

    async def _disconnect(self) -> None:
        if self._qmp is not None:
            qmp, self._qmp = self._qmp, None
            try:
                await asyncio.wait_for(qmp.disconnect(), 5)
            except (QMPError, OSError, EOFError, asyncio.TimeoutError):
                pass  # QEMU already closed its end: disconnect re-raises the reader's EOF

    def kill(self) -> None:
        """Kill QEMU's process group now and release everything (idempotent, no event loop needed)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        for sock in (self._console, self._qmp_sock):
            if sock is not None:
                sock.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        if self._exit_token is not None:
            runtime.forget(self._exit_token)
            self._exit_token = None

    async def __aenter__(self) -> Machine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(timeout=2.0 if exc[0] is None else 0.5)

    # ---- state

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def console(self) -> str:
        """Everything the guest wrote to its serial console so far."""
        with self._lock:
            return self._raw.decode("utf-8", "replace")

    def console_tail(self, lines: int = 20) -> str:
        text = self.console.replace("\r", "").strip().splitlines()
        return "\n".join(text[-lines:]) if text else "(the guest printed nothing)"

    def qemu_output(self) -> str:
        """What QEMU itself printed (warnings, errors) so far."""
        if self._scratch is None:
            return ""
        try:
            return (self._scratch / "qemu.log").read_text(errors="replace")
        except OSError:
            return ""

    def on_output(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(text)`` for each piece of console output from now on (e.g. a live view)."""
        with self._lock:
            self._listeners.append(listener)

    def first_output_at(self) -> float | None:
        with self._lock:
            return self._chunks[0].at if self._chunks else None

    def seen_at(self, pattern: str | re.Pattern[str]) -> float | None:
        """When the console first held ``pattern`` (time.monotonic()), None if it has not yet."""
        with self._lock:
            raw, chunks = bytes(self._raw), list(self._chunks)
        text = raw.decode("utf-8", "replace")
        match = re.search(pattern if isinstance(pattern, re.Pattern) else re.escape(pattern), text)
        if match is None:
            return None
        end = len(text[:match.end()].encode("utf-8"))
        return next(c.at for c in chunks if c.end >= end)

    # ---- waiting

    async def _until(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``ready()`` (True) or ``timeout`` (False), woken by the console thread."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(changed.set)
            except RuntimeError:  # the loop is closed
                pass

        with self._lock:
            self._wakers.add(wake)
        deadline = loop.time() + timeout
        try:
            while True:
                changed.clear()
                if ready():
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
        finally:
            with self._lock:
                self._wakers.discard(wake)

    async def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 60.0, label: str | None = None) -> float:
        """Wait until the console shows ``pattern``; returns when it arrived (time.monotonic()).

        ``label`` names what is awaited in errors (default: the pattern).

        Raises :class:`GuestStoppedError` if QEMU exits first and
        :class:`BootTimeoutError` after ``timeout`` s, both with the console tail.
        """
        seen = await self._until(lambda: self.seen_at(pattern) is not None or self.exited_at is not None, timeout)
        at = self.seen_at(pattern)
        if at is not None:
            return at
        what = label or (pattern.pattern if isinstance(pattern, re.Pattern) else pattern)
        if seen:  # QEMU exited
            raise GuestStoppedError(
                f"QEMU exited (status {self.returncode}) before the console showed {what!r}. "
                f"Console tail:\n{self.console_tail()}\nQEMU said: {self.qemu_output().strip() or '(nothing)'}",
                "read the guest's last words above (a kernel panic?)")
        raise BootTimeoutError(
            f"no {what!r} on the console within {timeout:g} s (the machine was killed). "
            f"Console tail:\n{self.console_tail()}",
            "a slow host? raise the timeout; otherwise the console tail shows where the guest got stuck")

    async def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for QEMU to exit (e.g. the guest powered off); returns its exit status."""
        if not await self._until(lambda: self.exited_at is not None, timeout):
            raise BootTimeoutError(f"QEMU did not exit within {timeout:g} s. Console tail:\n{self.console_tail()}",
                                   "the guest did not power off: stop it with `await vm.stop()`")
        assert self.returncode is not None
        return self.returncode

    # ---- QMP

    async def qmp(self, command: str, **arguments: Any) -> Any:
        """Run a QMP command (``query-status``, ``stop``, ``cont``, ...) and return its result."""
        if self._qmp is None or not self.running:
            raise QemuError(f"{self.name} is not running", "start it first: await vm.start()")
        return await self._qmp.execute(command, arguments or None)

    async def hmp(self, command_line: str) -> str:
        """A human-monitor command (``info registers``, ``info cpus``, ...), through QMP."""
        return await self.qmp("human-monitor-command", **{"command-line": command_line})


def parse_registers(text: str) -> dict[str, int]:
    """``info registers`` output → {"RAX": …, "RIP": …, "CR0": …, "EFL": …} (segment registers: selector)."""
    regs = {}
    for name, value in re.findall(r"\b([A-Z][A-Z0-9]{1,3})\s?=\s?([0-9a-fA-F]+)\b", text):
        regs.setdefault(name, int(value, 16))
    return regs


# --------------------------------------------------------------------------- booting the tiny guest


@dataclass(frozen=True)
class BootTimes:
    """When each phase of a boot was reached, in seconds since QEMU was launched.

    ``guest_uptime_s`` is the guest's own clock at ``/init``.  The rest of
    ``userspace_s`` went to QEMU, firmware and loading the kernel — and to
    early kernel work done before the guest's clock ran: on ``microvm`` the
    kernel patches its own code (~0.3 s under TCG) before its clock starts.
    """

    first_output_s: float | None  # launch → first console byte
    userspace_s: float  # launch → the guest's /init report arrived
    poweroff_s: float | None  # launch → QEMU exited after the guest powered off
    guest_uptime_s: float  # the guest's clock at /init

    @property
    def before_kernel_s(self) -> float:
        """Wall time the guest's clock did not see: QEMU, firmware, loading, the kernel's earliest steps."""
        return max(0.0, self.userspace_s - self.guest_uptime_s)


@dataclass(frozen=True)
class BootResult:
    """A finished boot of the tiny guest: what it saw, how long it took, how it was run."""

    report: images.GuestReport
    times: BootTimes
    accel: AccelChoice
    config: MachineConfig
    command_line: tuple[str, ...]
    console: str
    exit_code: int | None
    notes: tuple[str, ...] = field(default=())  # choices labkit made for speed, and why

    def to_dict(self) -> dict:
        return {"accel": asdict(self.accel), "machine": self.config.machine, "cpu": self.config.cpu,
                "memory_mib": self.config.memory_mib, "vcpus": self.config.vcpus,
                "times": {**asdict(self.times), "before_kernel_s": self.times.before_kernel_s},
                "report": self.report.to_dict(), "notes": list(self.notes),
                "command_line": list(self.command_line), "exit_code": self.exit_code}


def linux_config(image: images.GuestImage, accel: AccelChoice, *, machine: str = "auto",
                 cpu: str | None = None, memory_mib: int = 128, vcpus: int = 1,
                 append: str = "", host_tuning: bool = True) -> tuple[MachineConfig, tuple[str, ...]]:
    """Options to boot ``image`` fast on this host, and the reasons (``notes``) for each choice.

    * the uncompressed ``vmlinux`` when the image has one: QEMU enters it at
      its PVH entry point, skipping the firmware's Linux loader and the
      in-guest decompression (a third of a TCG boot);
    * ``machine="auto"``: ``microvm`` (no PCI, no firmware) for a direct boot,
      else ``pc``;
    * under TCG, ``tsc_early_khz=<host TSC kHz>`` so the guest need not
      calibrate its clock against an emulated timer (that calibration is slow
      and sometimes fails on microvm).  ``host_tuning=False`` leaves it out.
    """
    notes = []
    kernel = image.vmlinux or image.kernel
    if image.vmlinux:
        notes.append("kernel: the uncompressed vmlinux, entered at its PVH entry point "
                     "(no firmware loader, no in-guest decompression)")
    if machine == "auto":
        machine = "microvm" if image.vmlinux else "pc"
        notes.append(f"machine: {machine} " + ("(no PCI bus, no firmware to run)" if machine == "microvm"
                                                 else "(the classic PC; a bzImage goes through SeaBIOS)"))
    cmdline = image.cmdline
    if accel.name == "tcg":
        tsc = host.tsc_frequency() if host_tuning else None
        if tsc:
            cmdline += f" tsc_early_khz={tsc.khz}"
            notes.append(f"tsc_early_khz={tsc.khz}: the guest's TSC is the host's under TCG "
                         f"(frequency from {tsc.source})")
        elif machine.startswith("microvm"):
            machine = "pc"
            notes.append("machine: pc, because this host's TSC frequency is unknown and microvm's guest "
                         "cannot always calibrate its clock under TCG")
    if append:
        cmdline += " " + append
    config = MachineConfig(accel=accel.name, machine=machine, cpu=cpu, memory_mib=memory_mib, vcpus=vcpus,
                           kernel=kernel, initrd=image.initrd, append=cmdline)
    return config, tuple(notes)




async def boot(image: images.GuestImage | None = None, *, accel: Accel = "auto", machine: str = "auto",
               cpu: str | None = None, memory_mib: int = 128, vcpus: int = 1, command: str | None = None,
               append: str = "", host_tuning: bool = True, timeout: float = 60.0,
               on_output: Callable[[str], None] | None = None) -> BootResult:
    """Boot the tiny guest once: wait for its report, let it power off, return what it saw and the timings.

    ``command`` runs in the guest after its report (output in
    ``result.report.command_output``).  The machine never outlives the call.
    A fresh nonce marks the guest's report and command output, so the
    command cannot fake where its output ends (:func:`labkit.images.with_nonce`).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidOptionError(f"timeout={timeout!r}: must be a number of seconds above 0",
                                 "the tiny guest needs ~2-5 s under TCG; the default is 60")
    if image is None:
        image = images.tiny_guest(command=command, fetch=False, progress=False)
    elif command is not None:
        image = replace(image, initrd=images.build_initramfs(command), command=command)
    choice = choose_accel(accel, "linux")
    config, notes = linux_config(image, choice, machine=machine, cpu=cpu, memory_mib=memory_mib,
                                 vcpus=vcpus, append=append, host_tuning=host_tuning)
    token = images.nonce()
    vm = Machine(config, name="tiny", nonce=token)
    if on_output:
        vm.on_output(on_output)
    report_line = re.compile(re.escape(images.report_prefix(token)) + r".*\n")
    async with vm:
        start = time.monotonic()
        try:
            await vm.wait_for(report_line, timeout, label=f"{images.REPORT_MARKER.strip()} line")
        except GuestStoppedError:
            _raise_panic(vm.console, token)
            raise
        left = max(5.0, timeout - (time.monotonic() - start))
        if not await vm._until(lambda: vm.exited_at is not None, left):
            _raise_panic(vm.console, token)
            raise BootTimeoutError(
                f"the guest reported, but did not power off within {left:g} s more (labkit stopped it). "
                f"Console tail:\n{vm.console_tail()}",
                "a command that runs longer needs a longer timeout (labkit boot --timeout S, or "
                "qemu.boot(timeout=S)); one that never ends (a shell loop) cannot finish")
        exit_code = vm.returncode
    _raise_panic(vm.console, token)
    assert vm.launched_at is not None
    first, userspace = vm.first_output_at(), vm.seen_at(report_line)
    console = vm.console
    report = images.parse_report(console, token)
    times = BootTimes(
        first_output_s=first - vm.launched_at if first else None,
        userspace_s=(userspace or 0.0) - vm.launched_at,
        poweroff_s=vm.exited_at - vm.launched_at if vm.exited_at else None,
        guest_uptime_s=report.uptime_s)
    return BootResult(report, times, choice, config, tuple(vm.command_line), console, exit_code, notes)


def _raise_panic(console: str, token: str) -> None:
    """Raise :class:`GuestPanicError` if the guest's kernel panicked (its console says so); else nothing."""
    panic = images.find_panic(console, token)
    if panic is not None:
        raise GuestPanicError(panic.what, panic.fix)


# --------------------------------------------------------------------------- measuring accelerators

#: A CPU-bound loop the guest runs after its report, timed by the guest's own clock.
WORKLOAD_ITERATIONS = 100_000
WORKLOAD_COMMAND = ("read a _ </proc/uptime; "
                    f"awk 'BEGIN {{ for (i = 0; i < {WORKLOAD_ITERATIONS}; i++) s += i }}'; "
                    "read b _ </proc/uptime; echo \"LABKIT-WORKLOAD $a $b\"")


def workload_seconds(report: images.GuestReport) -> float | None:
    """How long :data:`WORKLOAD_COMMAND` took by the guest's clock (10 ms resolution), if it ran."""
    match = re.search(r"LABKIT-WORKLOAD ([\d.]+) ([\d.]+)", report.command_output or "")
    return float(match.group(2)) - float(match.group(1)) if match else None


async def compare_boots(image: images.GuestImage | None = None, boots: int = 3, workload: bool = True,
                        **options: Any) -> list[BootResult]:
    """Boot the tiny guest ``boots`` times under TCG and, where KVM can boot Linux, under KVM.

    With ``workload``, each guest also runs :data:`WORKLOAD_COMMAND` (see
    :func:`workload_seconds`).  Boots alternate between accelerators so a
    busy moment on a shared host does not favour one of them.
    """
    accels: list[Accel] = ["tcg"] + (["kvm"] if choose_accel("auto", "linux").name == "kvm" else [])
    results = []
    for _ in range(boots):
        for accel in accels:
            results.append(await boot(image, accel=accel, command=WORKLOAD_COMMAND if workload else None,
                                      **options))
    return results
