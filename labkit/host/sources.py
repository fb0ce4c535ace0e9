"""Where host facts come from: this machine, or a recording of another one.

A :class:`Source` answers three kinds of question about a path under the
host's root: its text (:meth:`Source.read`), whether it was there
(:meth:`Source.state`: ``present``, ``absent`` or ``unknown``) and, for
``/dev/kvm``, what kind of node it is (:meth:`Source.device`).

*Unknown is not absent.*  On this machine (:class:`LiveSource`) a missing
file really is missing: no ``/proc/modules`` means no loadable modules.  A
recording (:class:`RecordedSource`) only knows what it recorded: its
``host.json`` manifest lists what was recorded (``recorded``: a listed path
the tree lacks was absent on the host; a listed directory was recorded
whole), and a bare tree of files with no manifest, such as a forum post's
``/proc/cpuinfo``, is a partial capture in which everything else is
unknown.
"""

from __future__ import annotations

import ctypes
import fcntl
import grp
import os
import pwd
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from labkit import process
from labkit.host.manifest import FORMAT1_RECORDED, HostDataError, load_manifest
from labkit.i18n import Phrase
from labkit.i18n import noop as N_
from labkit.kvm import abi

State = Literal["present", "absent", "unknown"]

#: ``/dev/kvm`` is the misc character device 10:232 (``KVM_MINOR`` in <linux/miscdevice.h>).
KVM_DEVICE_NUMBER = (10, 232)

#: Files the lab reads; :func:`labkit.host.record` records them.
RECORDED_FILES = ("proc/cpuinfo", "proc/version", "proc/cmdline", "proc/modules",
                  "proc/sys/kernel/osrelease", "sys/class/dmi/id/sys_vendor",
                  "sys/class/dmi/id/product_name", "sys/class/dmi/id/bios_vendor",
                  "sys/class/dmi/id/bios_version", "sys/class/dmi/id/board_vendor",
                  "sys/class/dmi/id/chassis_asset_tag", "sys/hypervisor/type")

@dataclass(frozen=True)
class DeviceNode:
    """A device file as found: its kind, device number and permissions (None: not recorded)."""

    mode: int | None
    uid: int | None
    gid: int | None
    owner: str | None
    group: str | None
    kind: str = "char"  # char, block, regular file, directory, symlink, other
    rdev: tuple[int, int] | None = None
    target: str | None = None  # where a symlink points

    @property
    def is_char_device(self) -> bool:
        return self.kind == "char"

    @property
    def is_kvm(self) -> bool | None:
        """Whether this is KVM's device: a character device 10:232 (None: number not recorded)."""
        if not self.is_char_device:
            return False
        return None if self.rdev is None else self.rdev == KVM_DEVICE_NUMBER

    def describe(self) -> str:
        if self.kind == "symlink":
            return Phrase(N_("a symlink to {target}"), target=self.target)
        if self.kind != "char":
            return Phrase(N_("a {kind}"), kind=self.kind)
        if self.rdev:
            return Phrase(N_("a character device {major}:{minor}"), major=self.rdev[0], minor=self.rdev[1])
        return Phrase(N_("a character device"))


@dataclass(frozen=True)
class KvmProbe:
    """What opening ``/dev/kvm`` and asking it answered (or why it could not be asked)."""

    api_version: int | None = None
    capabilities: dict[str, int] = field(default_factory=dict)
    error: str | None = None


class Source(Protocol):
    """Where host facts are read from."""

    live: bool

    def read(self, rel: str) -> str | None:
        """Text of ``root/rel``; None when absent *or unknown* (ask :meth:`state`)."""

    def state(self, rel: str) -> State:
        """Whether ``root/rel`` was there, was not, or nobody recorded it."""

    def exists(self, rel: str) -> bool:
        """``state(rel) == "present"``."""

    def device(self, name: str) -> DeviceNode | None:
        """The node at ``/dev/<name>``; None when absent or unknown (ask ``state("dev/<name>")``)."""

    def probe_kvm(self) -> KvmProbe:
        """Open ``/dev/kvm`` and ask its API version and capabilities."""

    def cpuid(self, leaf: int) -> tuple[int, int, int, int] | None:
        """EAX, EBX, ECX, EDX of a CPUID leaf, None when it cannot be read."""

    def msr(self, index: int) -> int | None:
        """A model-specific register of CPU 0, None when it cannot be read."""

    def machine(self) -> str | None:
        """``uname -m`` of the host, None when not known."""

    def group_exists(self, name: str) -> bool | None:
        """Whether the host has a group called ``name`` (None: not known)."""


class LiveSource:
    """This host (``root='/'``) or a live-like tree under another root: missing means absent."""

    live = True

    def __init__(self, root: Path | str = "/") -> None:
        self.root = Path(root)

    def read(self, rel: str) -> str | None:
        if rel == "dmesg":
            return _read_kmsg() if self.root == Path("/") else None
        try:
            return (self.root / rel).read_text(errors="replace")
        except OSError:
            return None

    def state(self, rel: str) -> State:
        if rel == "dmesg":
            return "present" if self.read(rel) is not None else "unknown"
        try:
            os.lstat(self.root / rel)
        except FileNotFoundError:
            return "absent"
        except OSError:
            return "unknown"
        return "present"

    def exists(self, rel: str) -> bool:
        return self.state(rel) == "present"

    def device(self, name: str) -> DeviceNode | None:
        path = self.root / "dev" / name
        try:
            st = os.lstat(path)
        except OSError:
            return None
        target = None
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
        return DeviceNode(mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                          owner=_user_name(st.st_uid), group=_group_name(st.st_gid),
                          kind=_kind(st.st_mode), target=target,
                          rdev=(os.major(st.st_rdev), os.minor(st.st_rdev))
                          if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else None)

    def probe_kvm(self) -> KvmProbe:
        """Ask the kernel; only ever called for a character device 10:232 (never for a file)."""
        try:
            fd = os.open(self.root / "dev" / "kvm", os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            return KvmProbe(error=f"open /dev/kvm: {exc.strerror}")
        try:
            if not stat.S_ISCHR(os.fstat(fd).st_mode):  # replaced between stat and open
                return KvmProbe(error="/dev/kvm is not a character device")
            version = fcntl.ioctl(fd, abi.KVM_GET_API_VERSION)
            caps = {name: fcntl.ioctl(fd, abi.KVM_CHECK_EXTENSION, getattr(abi, name))
                    for name in abi.PROBED_CAPABILITIES}
            return KvmProbe(api_version=version, capabilities=caps)
        except OSError as exc:
            return KvmProbe(error=f"ioctl on /dev/kvm: {exc.strerror}")
        finally:
            os.close(fd)

    def cpuid(self, leaf: int) -> tuple[int, int, int, int] | None:
        if self.root != Path("/"):
            return None
        try:  # the cpuid driver: file offset = leaf (root only on most hosts)
            with open("/dev/cpu/0/cpuid", "rb") as dev:
                dev.seek(leaf)
                return struct.unpack("<4I", dev.read(16))
        except OSError:
            return cpuid_instruction(leaf)

    def msr(self, index: int) -> int | None:
        if self.root != Path("/"):
            return None
        try:  # the msr driver (root, and `modprobe msr`): file offset = register
            with open("/dev/cpu/0/msr", "rb") as dev:
                dev.seek(index)
                return struct.unpack("<Q", dev.read(8))[0]
        except (OSError, struct.error):
            return None

    def machine(self) -> str | None:
        return os.uname().machine if self.root == Path("/") else None

    def group_exists(self, name: str) -> bool | None:
        try:
            grp.getgrnam(name)
        except KeyError:
            return False
        return True


class RecordedSource:
    """A recorded host: files under ``root`` plus an optional ``host.json`` manifest.

    ``host.json`` (validated against :data:`HOST_JSON_SCHEMA`) holds what
    files cannot: device nodes (git keeps no device files), the recorded
    ``/dev/kvm`` probe, CPUID leaves, MSRs, and ``recorded``, the list of
    paths that were recorded (so a missing one is known to be absent).
    Without it the tree is a partial capture: whatever it lacks is unknown.
    A recording is never probed: its ``dev/kvm`` is data, not a door into a kernel.
    """

    live = False

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.meta = load_manifest(self.root)
        fmt = self.meta.get("format", 1 if "devices" in self.meta else None)
        recorded = self.meta.get("recorded", FORMAT1_RECORDED if fmt == 1 else ())
        self.recorded = tuple(p.strip("/") for p in recorded)

    def read(self, rel: str) -> str | None:
        path = self.root / rel
        if rel == "proc/modules" and not path.is_file() and (self.root / "lsmod").is_file():
            return _lsmod_as_proc_modules((self.root / "lsmod").read_text(errors="replace"))
        if path.is_symlink() or not path.is_file():
            return None
        try:
            return path.read_text(errors="replace")
        except OSError:
            return None

    def state(self, rel: str) -> State:
        rel = rel.strip("/")
        if rel == "dev/kvm" and "kvm" in self.meta.get("devices", {}):
            return "present"
        if os.path.lexists(self.root / rel) or (rel == "proc/modules" and (self.root / "lsmod").is_file()):
            return "present"
        if any(rel == p or rel.startswith(p + "/") for p in self.recorded):
            return "absent"
        return "unknown"

    def exists(self, rel: str) -> bool:
        return self.state(rel) == "present"

    def device(self, name: str) -> DeviceNode | None:
        node = self.meta.get("devices", {}).get(name)
        if node is not None:
            rdev = node.get("rdev")
            return DeviceNode(
                mode=int(node["mode"], 8) if "mode" in node else None, uid=node.get("uid"),
                gid=node.get("gid"), owner=node.get("owner"), group=node.get("group"),
                kind=node.get("type", "char"), target=node.get("target"),
                rdev=(int(rdev.split(":")[0]), int(rdev.split(":")[1])) if rdev else None)
        path = self.root / "dev" / name
        if os.path.lexists(path):  # a file in the tree: what it is, never opened
            st = os.lstat(path)
            return DeviceNode(None, None, None, None, None, kind=_kind(st.st_mode),
                              target=os.readlink(path) if stat.S_ISLNK(st.st_mode) else None)
        return None

    def probe_kvm(self) -> KvmProbe:
        return KvmProbe(**self.meta.get("kvm_probe", {"error": "no probe was recorded"}))

    def cpuid(self, leaf: int) -> tuple[int, int, int, int] | None:
        regs = self.meta.get("cpuid", {}).get(f"{leaf:#x}")
        return tuple(regs) if regs else None

    def msr(self, index: int) -> int | None:
        return self.meta.get("msr", {}).get(f"{index:#x}")

    def machine(self) -> str | None:
        return self.meta.get("machine")

    def group_exists(self, name: str) -> bool | None:
        groups = self.meta.get("groups")
        return None if groups is None else name in groups

    @property
    def modules_filter(self) -> str | None:
        """A capture such as ``lsmod | grep kvm`` knows only the modules whose name contains this."""
        return self.meta.get("modules_filter")


def source_for(root: Path | str = "/") -> Source:
    """This machine for ``/``; any other directory is a recording of another host.

    Paths that cannot be a host (missing, a file, an empty directory) raise
    :class:`HostDataError` with one clear sentence instead of answering
    "bare metal, 0 CPUs".
    """
    root = Path(root)
    if root == Path("/"):
        return LiveSource(root)
    if not root.exists():
        raise HostDataError(f"{root} does not exist",
                            "give a directory made by `labkit host --record DIR` (or a tree with proc/cpuinfo)")
    if not root.is_dir():
        raise HostDataError(f"{root} is a file, not a recorded host (a directory)",
                            "give the directory that holds proc/, sys/ and host.json")
    if not any(root.iterdir()):
        raise HostDataError(f"{root} is empty: nothing was recorded there",
                            "record a host into it with `labkit host --record DIR`")
    if not any(os.path.lexists(root / name) for name in _RECORDING_ENTRIES):
        raise HostDataError(f"{root} holds none of {', '.join(_RECORDING_ENTRIES)}: it is not a recorded host",
                            "give a directory made by `labkit host --record DIR` (or a capture laid out like it)")
    return RecordedSource(root)


#: What a recording's top level may hold.
_RECORDING_ENTRIES = ("host.json", "proc", "sys", "dev", "dmesg", "lsmod")


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "char"
    if stat.S_ISBLK(mode):
        return "block"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    return "regular file" if stat.S_ISREG(mode) else "other"


def _lsmod_as_proc_modules(text: str) -> str:
    """``lsmod`` output (a header, then name size users) in /proc/modules' shape: name first."""
    return "".join(line + "\n" for line in text.splitlines()
                   if line.strip() and not line.startswith("Module "))


def _read_kmsg() -> str | None:
    """The kernel log from ``/dev/kmsg`` (root where dmesg_restrict is on); None when not readable."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    lines = []
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BrokenPipeError:  # a record was overwritten while we read: skip it
                continue
            except BlockingIOError:
                break
            except OSError:
                return None
            if not record:
                break
            lines.append(record.decode(errors="replace").partition(";")[2].split("\n", 1)[0])
    finally:
        os.close(fd)
    return "\n".join(lines) + "\n"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# The cpuid instruction is unprivileged: user space may execute it directly.
# This stub is `cpuid(leaf, out)` for the SysV x86-64 calling convention:
#   push rbx; mov eax, edi; xor ecx, ecx; cpuid;
#   mov [rsi], eax; mov [rsi+4], ebx; mov [rsi+8], ecx; mov [rsi+12], edx;
#   pop rbx; ret
_CPUID_STUB = bytes.fromhex("53 89f8 31c9 0fa2 8906 895e04 894e08 89560c 5b c3")


def cpuid_instruction(leaf: int) -> tuple[int, int, int, int] | None:
    """Execute CPUID in this process (x86-64 only) when ``/dev/cpu`` is not readable."""
    if os.uname().machine != "x86_64":
        return None
    out = (ctypes.c_uint32 * 4)()
    try:
        with process.native_function(_CPUID_STUB, None, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)) as stub:
            stub(leaf, out)
    except OSError:  # W^X policy forbids it
        return None
    return (out[0], out[1], out[2], out[3])


def cpuid(leaf: int) -> tuple[int, int, int, int] | None:
    """Ask this machine's CPU directly: EAX, EBX, ECX, EDX of CPUID ``leaf`` (None if unreadable)."""
    return LiveSource().cpuid(leaf)
