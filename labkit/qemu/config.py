"""Typed options of one QEMU machine, validated before QEMU runs, and the command line they make."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from labkit import host, runtime
from labkit.errors import InvalidOptionError, MissingKernelError, MissingToolError
from labkit.images import cache as imagecache

QEMU = "qemu-system-x86_64"

#: The isa-debug-exit device: a write of V to its port makes QEMU exit with status (V << 1) | 1.
DEBUG_EXIT_PORT = 0xF4
DEBUG_EXIT_DEVICE = f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"


def qemu_binary(name: str = QEMU) -> str:
    """Path of the QEMU system emulator, or a :class:`MissingToolError` saying what to install."""
    return runtime.require_program(name, "qemu-system-x86")


def qemu_version(binary: str | None = None) -> str:
    """``QEMU emulator version …`` as the installed binary prints it."""
    out = subprocess.run([binary or qemu_binary(), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


@functools.lru_cache(maxsize=8)
def _help_names(binary: str, option: str) -> frozenset[str]:
    """The names ``binary option help`` lists, kept in the user's cache per binary (its path, inode, size and
    mtime): the list changes only with the binary, and asking costs a QEMU start — ~40 ms here, 2.3 s inside
    the emulated AMD-V machine, once per process that validates a machine there."""
    memo = _help_memo(binary, option)
    with contextlib.suppress(OSError, ValueError, TypeError):  # none kept, or not a list: ask
        if memo is not None and (kept := frozenset(json.loads(memo.read_text()))):
            return kept
    out = subprocess.run([binary, option, "help"], capture_output=True, text=True, check=False).stdout
    names = set()
    for line in out.splitlines():
        words = line.split()
        if option == "-cpu" and len(words) >= 2 and words[0] == "x86":
            names.add(words[1])
        elif option == "-machine" and words and line[:1] not in (" ", "") and not line.startswith("Supported"):
            names.add(words[0])
    if memo and names:
        with contextlib.suppress(OSError):  # a read-only or full cache: asked again next time
            for folder in (memo.parent.parent, memo.parent):  # private, as the rest of the user's cache
                folder.mkdir(mode=0o700, exist_ok=True)
            imagecache.write_atomically(json.dumps(sorted(names)).encode(), memo, 0o600)
    return frozenset(names)


def _help_memo(binary: str, option: str) -> Path | None:
    """Where :func:`_help_names` keeps what ``binary`` listed (None: the binary cannot be read)."""
    try:
        st = os.stat(binary)
    except OSError:
        return None
    key = f"{os.path.realpath(binary)} {st.st_ino} {st.st_size} {st.st_mtime_ns} {option}"
    return runtime.cache_dir(create=False) / "qemu" / f"help-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


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
        host.check_guest(self.memory_mib, self.vcpus, self.append,
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
                error = MissingToolError if name == "bios" else MissingKernelError
                raise error(f"the {name} file {path} {what}",
                            "build the guest image with `labkit image build`" if name != "bios"
                            else "build the payload with labkit.lessons.payload.build()")
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


def qemu_name(argv: list[str]) -> str | None:
    """The ``-name`` label of a QEMU command line (``guest=NAME`` when libvirt started it); None if not QEMU."""
    if not argv or not Path(argv[0]).name.startswith("qemu-system") or "-name" not in argv[:-1]:
        return None
    return argv[argv.index("-name") + 1].split(",")[0]
