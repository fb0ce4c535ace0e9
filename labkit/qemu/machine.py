"""One running ``qemu-system-x86_64`` as a Python object: launch, console, QMP, one cleanup path.

:class:`QemuMachine` launches QEMU without a shell, in its own process group,
with the serial console and the QMP monitor on socket pairs (no paths to race
on), reads the console in a thread that timestamps every chunk, and talks QMP
through the ``qemu.qmp`` library (asyncio: a notebook can ``await`` it).  The
process group is killed on error, timeout, ``KeyboardInterrupt`` and
interpreter exit.
"""

from __future__ import annotations

import asyncio
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient
from qemu.qmp.error import QMPError

from labkit import runtime
from labkit.errors import GuestStoppedError, GuestTimeoutError, LabkitError, console_tail
from labkit.process import die_with_parent
from labkit.qemu.config import MachineConfig


class QemuError(LabkitError):
    """Something went wrong with a QEMU machine."""


@dataclass(frozen=True)
class QemuUsage:
    """What one QEMU process used over its whole life, as the kernel accounted it when it exited."""

    cpu_s: float  # user + system CPU time of all its threads (a loaded host inflates this less than wall time)
    peak_rss_mib: float  # its largest resident memory: guest RAM touched, translated code, QEMU itself


class LaunchError(QemuError):
    """QEMU did not start: carries the command line and QEMU's own output."""

    def __init__(self, what: str, fix: str | None, command_line: list[str], output: str) -> None:
        super().__init__(f"{what}\ncommand: {shlex.join(command_line)}\nQEMU said:\n{output.strip() or '(nothing)'}",
                         fix)
        self.command_line = command_line
        self.output = output


@dataclass(frozen=True)
class ConsoleChunk:
    at: float  # time.monotonic() when it arrived
    end: int  # length of the console text once it arrived


class QemuMachine:
    """One running ``qemu-system-x86_64``: console, QMP, guaranteed cleanup.

    Use it as ``async with QemuMachine(config) as vm:`` or ``vm = await
    QemuMachine(config).start()`` … ``await vm.stop()``; a machine left running
    is killed when the interpreter (or notebook kernel) exits.
    """

    def __init__(self, config: MachineConfig, name: str = "vm") -> None:
        self.name = runtime.lab_name(name, "machine", serial=id(self) % 100000)
        self.config = config
        self.command_line: list[str] = []
        self.launched_at: float | None = None
        self.resumed_at: float | None = None  # when the vCPUs were started (QMP cont): QEMU had loaded the guest
        self.exited_at: float | None = None
        self.returncode: int | None = None
        self.usage: QemuUsage | None = None  # known once QEMU exited (None if another thread reaped it first)
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

    # ---- lifecycle

    async def start(self, qmp_timeout: float = 20.0, paused: bool = False) -> QemuMachine:
        """Launch QEMU and connect QMP, then let the guest run (unless ``paused``).

        QEMU starts with its vCPUs stopped (``-S``, as libvirt does), so QMP is
        connected before the guest can do anything, even finish and exit.  On
        any failure nothing is left running.
        """
        if self._proc is not None:
            raise QemuError(f"{self.name} was already started", "create a new QemuMachine")
        self.config.validate()
        console, console_child = socket.socketpair()
        qmp, qmp_child = socket.socketpair()
        self._console, self._qmp_sock = console, qmp
        try:  # from here on anything that fails leaves nothing behind: kill() releases what exists
            self._scratch = runtime.scratch_dir("qemu")
            self.command_line = self.config.argv(self.name, console_child.fileno(), qmp_child.fileno())
            with open(self._scratch / "qemu.log", "w+b") as log:
                self.launched_at = time.monotonic()
                try:
                    self._proc = subprocess.Popen(self.command_line, stdin=subprocess.DEVNULL, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True,
                                                  pass_fds=(console_child.fileno(), qmp_child.fileno()),
                                                  preexec_fn=die_with_parent)
                except (OSError, subprocess.SubprocessError) as exc:  # not executable, no memory or fds left
                    raise LaunchError(f"QEMU could not be started ({type(exc).__name__}: {exc})",
                                      "check that the binary runs by hand (qemu-system-x86_64 --version) and "
                                      "that the host has memory and file descriptors to spare",
                                      self.command_line, "") from None
            self._exit_token = runtime.release_at_exit(self.kill)
        except BaseException:
            self.kill()
            raise
        finally:  # QEMU holds its own copies now; ours would keep the sockets open after it exits
            console_child.close()
            qmp_child.close()
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
            self.resumed_at = time.monotonic()
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
        self.returncode, self.usage = _reap(self._proc)
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

    async def __aenter__(self) -> QemuMachine:
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
        """The last ``lines`` lines of the console (:func:`labkit.errors.console_tail`)."""
        return console_tail(self.console, lines)

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
        :class:`GuestTimeoutError` after ``timeout`` s, both with the console tail.
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
        raise GuestTimeoutError(
            f"no {what!r} on the console within {timeout:g} s (the machine was killed). "
            f"Console tail:\n{self.console_tail()}",
            "a slow host? raise the timeout; otherwise the console tail shows where the guest got stuck")

    async def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for QEMU to exit (e.g. the guest powered off); returns its exit status."""
        if not await self._until(lambda: self.exited_at is not None, timeout):
            raise GuestTimeoutError(f"QEMU did not exit within {timeout:g} s. Console tail:\n{self.console_tail()}",
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


def _reap(proc: subprocess.Popen) -> tuple[int, QemuUsage | None]:
    """Wait for ``proc`` with wait4, which also returns the kernel's account of its CPU time and peak memory."""
    if proc.returncode is not None:
        return proc.returncode, None
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:  # a poll() in another thread (kill, running) reaped it first: no account
        return proc.wait(), None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, QemuUsage(usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def parse_registers(text: str) -> dict[str, int]:
    """``info registers`` output → {"RAX": …, "RIP": …, "CR0": …, "EFL": …} (segment registers: selector)."""
    regs: dict[str, int] = {}
    for name, value in re.findall(r"\b([A-Z][A-Z0-9]{1,3})\s?=\s?([0-9a-fA-F]+)\b", text):
        regs.setdefault(name, int(value, 16))
    return regs
