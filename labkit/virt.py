"""libvirt: the management layer over QEMU, driven from Python.

Notebook 04 ran QEMU by hand: a command line, a process, a console.  libvirt
turns that into *managed* guests: a persistent XML definition, a stable API
(the same calls for QEMU, Xen, LXC, local or ``qemu+ssh://`` remote hosts),
lifecycle events, and statistics.  This module is the lab's thin layer over
libvirt-python:

* :func:`choose_uri` / :func:`connect` — which libvirt connection, and why
  (``qemu:///session`` for an unprivileged user, ``qemu:///system`` as root,
  with a daemon labkit starts itself where no init system does: see
  :mod:`labkit.libvirtd`);
* :class:`DomainSpec` → :func:`domain_xml` — a typed description rendered to
  domain XML with :mod:`xml.etree`, validated by libvirt's schema on define;
* :func:`choose_domain_type` — ``kvm`` or ``qemu`` (TCG) from what libvirt
  offers *and* what this host's CPU can really run;
* :class:`Domain` — define, start, wait for the guest's report line, stats,
  lifecycle events, suspend/resume, destroy, undefine: a context manager that
  always destroys and undefines what it created;
* :func:`qemu_command_line` — the QEMU command line libvirt generated.

Every domain labkit makes is named ``labkit-<user>-…`` and labkit never
touches a domain without that prefix.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import threading
import time
import uuid
import warnings
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import libvirt
import psutil

from labkit import host, images, libvirtd, runtime
from labkit.errors import AccessDeniedError, InvalidOptionError, LabkitError, MissingToolError, from_os_error

SESSION_URI = "qemu:///session"
SYSTEM_URI = libvirtd.SYSTEM_URI
TEST_URI = "test:///default"
#: Set this to use another connection (e.g. ``qemu+ssh://user@host/system``).
URI_ENV = "LABKIT_VIRT_URI"

#: virDomainState, in enum order, as ``virsh domstate`` prints them.
STATES = ("no state", "running", "blocked", "paused", "shutting down", "shut off", "crashed", "pmsuspended")
#: virDomainEventType, in enum order, as ``virsh event --event lifecycle`` prints them.
EVENTS = ("defined", "undefined", "started", "suspended", "resumed", "stopped", "shutdown", "pmsuspended",
          "crashed")

_STATS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BALLOON
          | libvirt.VIR_DOMAIN_STATS_VCPU)
#: Every start is tied to the connection that made it: when the owner dies (kill -9 of a notebook
#: kernel or of ``labkit virt boot``), libvirt destroys the guest itself.
_START_FLAGS = libvirt.VIR_DOMAIN_START_AUTODESTROY
#: Undefine also drops a managed-save image and snapshot metadata, which would otherwise block it.
_UNDEFINE_FLAGS = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
_DUPLICATE_FIX = ("choose another name, or remove the old domain: its Domain's close() in Python, conn.cleanup() for "
                  "all your lab domains, or from a shell: labkit virt cleanup (virsh destroy/undefine NAME)")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_.-")


def _event_details(event: str) -> dict[int, str]:
    """libvirt's detail codes of one lifecycle event (``VIR_DOMAIN_EVENT_STOPPED_*`` …) by number."""
    prefix = f"VIR_DOMAIN_EVENT_{event.upper()}_"
    return {value: name[len(prefix):].lower().replace("_", " ") for name, value in vars(libvirt).items()
            if name.startswith(prefix) and isinstance(value, int) and not name.endswith("_LAST")}


_DETAILS = {i: _event_details(name) for i, name in enumerate(EVENTS)}


# --------------------------------------------------------------------------- errors


class VirtError(LabkitError):
    """libvirt refused or failed an operation (its message is kept)."""


class DaemonUnreachableError(VirtError):
    """No libvirt daemon answers on the connection's URI."""


class VirtAccessDeniedError(AccessDeniedError):
    """The daemon answered, but this user may not use that connection."""


class DuplicateDomainError(InvalidOptionError):
    """A domain with this name already exists."""


class DomainXmlError(InvalidOptionError):
    """The domain XML is malformed or fails libvirt's schema."""


class MissingKernelError(MissingToolError):
    """The guest kernel or initramfs file is not there."""


class GuestBootError(VirtError):
    """The guest stopped, or never printed its report line, in time."""


class GuestPanicError(GuestBootError, images.GuestPanicError):
    """The guest's kernel panicked (``on_crash`` destroy: the domain stops)."""


def _translate(exc: libvirt.libvirtError, uri: str, action: str) -> LabkitError:
    """A libvirt error as the labkit error a learner can act on."""
    code, msg = exc.get_error_code(), exc.get_error_message() or str(exc)
    if code in (libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_ERR_XML_DETAIL, libvirt.VIR_ERR_XML_INVALID_SCHEMA):
        return DomainXmlError(f"libvirt rejected the domain XML: {msg}",
                              "compare with https://libvirt.org/formatdomain.html; `virt-xml-validate FILE "
                              "domain` reports the same problem without libvirt")
    if code == libvirt.VIR_ERR_DOM_EXIST or "already exists" in msg:
        return DuplicateDomainError(f"cannot {action}: {msg}", _DUPLICATE_FIX)
    unreachable = "Failed to connect socket" in msg or "Connection refused" in msg or code == libvirt.VIR_ERR_NO_CONNECT
    # a normal user's qemu:///system needs polkit's consent (asked over D-Bus), which may be unavailable
    polkit = action == "connect" and uri == SYSTEM_URI and os.geteuid() != 0 and not unreachable
    if polkit or "Permission denied" in msg or code in (
            libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_UNAVAILABLE, libvirt.VIR_ERR_AUTH_CANCELLED,
            libvirt.VIR_ERR_ACCESS_DENIED):
        fix = (f"{SYSTEM_URI} needs root: as a normal user use {SESSION_URI} (labkit's default: unset "
               f"{URI_ENV}), or run the lab as root" if action == "connect" else
               "QEMU runs as the user set in the daemon's qemu.conf and must be able to read the kernel, "
               "initramfs and console paths the domain names: put them where that user can read them")
        return VirtAccessDeniedError(f"not allowed to {action} on {uri}: {msg}", fix)
    if unreachable:
        fix = ("sudo .venv/bin/labkit virt up  (starts libvirtd; ./kvmlab test and notebook 05 do it "
               "themselves as root)" if uri == SYSTEM_URI else
               "libvirt starts the per-user daemon itself: check it is installed (./kvmlab setup) and read "
               "~/.cache/libvirt/libvirtd.log" if uri == SESSION_URI else
               f"start libvirtd on the host of {uri}")
        return DaemonUnreachableError(f"no libvirt daemon answers on {uri}: {msg}", fix)
    return VirtError(f"cannot {action} on {uri}: {msg}",
                     "see the daemon's log (/var/log/libvirt/ for qemu:///system, ~/.cache/libvirt/ for "
                     "qemu:///session)")


# --------------------------------------------------------------------------- connection


@dataclass(frozen=True)
class UriChoice:
    """The libvirt URI labkit uses, and the sentence that says why."""

    uri: str
    reason: str


def choose_uri(euid: int | None = None, env: Mapping[str, str] | None = None) -> UriChoice:
    """``$LABKIT_VIRT_URI`` if set, ``qemu:///system`` for root, else ``qemu:///session``."""
    env = os.environ if env is None else env
    euid = os.geteuid() if euid is None else euid
    if env.get(URI_ENV):
        return UriChoice(env[URI_ENV], f"{URI_ENV} is set")
    if euid == 0:
        return UriChoice(SYSTEM_URI, "you are root: the system-wide daemon, which manages every root-owned "
                                     "guest on this host (and may use /dev/kvm)")
    return UriChoice(SESSION_URI, "you are not root: a private per-user daemon that libvirt starts for you; "
                                  "your guests run as you and other users cannot see them")


@dataclass(frozen=True)
class UriParts:
    """A libvirt URI taken apart: ``driver[+transport]://[user@][host]/path``."""

    driver: str  # qemu, test, xen, lxc, ...
    transport: str  # '' (local unix socket), ssh, tls, tcp, unix, libssh, ...
    user: str
    host: str  # '' = this machine
    path: str  # /system (root's daemon), /session (per-user), /default (test driver)

    @property
    def remote(self) -> bool:
        return bool(self.host)


def uri_parts(uri: str) -> UriParts:
    """Split a libvirt connection URI (see https://libvirt.org/uri.html)."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme:
        raise InvalidOptionError(f"{uri!r} is not a libvirt URI", "write it as driver[+transport]://[user@][host]/path, "
                                                                  "e.g. qemu:///system or qemu+ssh://me@server/system")
    driver, _, transport = scheme.partition("+")
    authority, _, path = rest.partition("/")
    user, _, hostname = authority.rpartition("@")
    return UriParts(driver, transport, user, hostname, "/" + path.split("?")[0])


_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None


def _event_loop() -> None:
    """Run libvirt's default event loop in a daemon thread (once per process).

    Events and keepalives only flow while a loop runs, and libvirt wants it
    registered before the first connection is opened.
    """
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        _loop_thread = threading.Thread(target=_run_loop, name="labkit-libvirt-events", daemon=True)
        _loop_thread.start()


def _run_loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


@dataclass(frozen=True)
class GuestCapability:
    """One ``<guest>`` of the capabilities XML: an architecture and who can run it."""

    os_type: str
    arch: str
    emulator: str | None
    machines: tuple[str, ...]
    domain_types: tuple[str, ...]


@dataclass(frozen=True)
class HostCapabilities:
    """What libvirt reports about the host (``virsh capabilities``)."""

    arch: str
    cpu_model: str | None
    cpu_vendor: str | None
    cpus: int
    memory_kib: int
    guests: tuple[GuestCapability, ...]

    def domain_types(self, arch: str = "x86_64") -> tuple[str, ...]:
        """The ``<domain type=…>`` values offered for ``hvm`` guests of ``arch``."""
        return tuple(t for g in self.guests if g.arch == arch and g.os_type == "hvm" for t in g.domain_types)


def parse_capabilities(text: str) -> HostCapabilities:
    """Parse ``virConnectGetCapabilities`` XML."""
    root = ET.fromstring(text)
    cells = root.findall("host/topology/cells/cell")
    return HostCapabilities(
        arch=root.findtext("host/cpu/arch", "unknown"),
        cpu_model=root.findtext("host/cpu/model"),
        cpu_vendor=root.findtext("host/cpu/vendor"),
        cpus=sum(len(c.findall("cpus/cpu")) for c in cells),
        memory_kib=sum(int(c.findtext("memory", "0")) for c in cells),
        guests=tuple(GuestCapability(
            os_type=g.findtext("os_type", ""),
            arch=g.find("arch").get("name", "") if g.find("arch") is not None else "",
            emulator=g.findtext("arch/emulator"),
            machines=tuple(m.text or "" for m in g.findall("arch/machine")),
            domain_types=tuple(d.get("type", "") for d in g.findall("arch/domain")),
        ) for g in root.findall("guest")),
    )


@dataclass(frozen=True)
class DomainCapabilities:
    """What a domain of one type may use on this host (a few fields of ``virsh domcapabilities``)."""

    virt_type: str
    emulator: str
    machine: str  # the default machine type, resolved (e.g. pc-i440fx-7.2)
    max_vcpus: int


@dataclass(frozen=True)
class DomainTypeChoice:
    """``kvm`` or ``qemu`` for a Linux guest on this host, and why."""

    type: str
    offered: tuple[str, ...]
    reason: str


def choose_domain_type(offered: Iterable[str], verdict: host.KvmVerdict) -> DomainTypeChoice:
    """``kvm`` where libvirt offers it *and* the CPU has VT-x/AMD-V; otherwise ``qemu`` (TCG).

    libvirt offers ``kvm`` whenever ``/dev/kvm`` opens — also under nested,
    software-assisted KVM, where a Linux guest does not boot (see notebook
    04).  So the host verdict decides, not the offer alone.
    """
    offered = tuple(dict.fromkeys(offered))
    if "kvm" in offered and verdict.boots_linux:
        return DomainTypeChoice("kvm", offered, f"libvirt offers kvm and the host has {verdict.label}: "
                                                "the guest's code runs on the CPU's virtualization extensions")
    if "kvm" in offered:
        why = (f"libvirt offers kvm (/dev/kvm opens), but this host has {verdict.label}: a Linux guest does "
               "not boot under it, so the guest runs under QEMU's TCG emulator (type 'qemu')")
    else:
        why = ("libvirt does not offer kvm on this connection (no usable /dev/kvm for the daemon), so the "
               "guest runs under QEMU's TCG emulator (type 'qemu')")
    if "qemu" not in offered:
        raise VirtError(f"this connection offers neither kvm nor qemu guests for x86_64 (offered: {offered})",
                        "install qemu-system-x86 (./kvmlab setup) and restart libvirtd")
    return DomainTypeChoice("qemu", offered, why)


def _destroy(dom: libvirt.virDomain) -> None:
    """Destroy ``dom`` if it runs; a guest that powers off by itself meanwhile is not an error."""
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError:
        if dom.isActive():
            raise


def _remove(dom: libvirt.virDomain) -> None:
    """Destroy and undefine ``dom`` (also its managed-save image and snapshot metadata).

    A transient domain has no definition: it is gone once destroyed.
    """
    _destroy(dom)
    try:
        persistent = dom.isPersistent()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return
        raise
    if persistent:
        dom.undefineFlags(_UNDEFINE_FLAGS)


class Connection:
    """An open libvirt connection, with the reason labkit chose it.  A context manager.

    ``raw`` is the libvirt-python ``virConnect``, for the calls labkit does
    not wrap; ``daemon`` says whether labkit had to start ``libvirtd``.
    """

    def __init__(self, raw: libvirt.virConnect, choice: UriChoice, daemon: libvirtd.Daemon | None = None) -> None:
        self.raw = raw
        self.choice = choice
        self.daemon = daemon
        self._caps: HostCapabilities | None = None
        self._domains: weakref.WeakSet[Domain] = weakref.WeakSet()  # closed with the connection
        self._token = runtime.release_at_exit(self.close)

    @property
    def uri(self) -> str:
        """The URI as the daemon reports it (``virsh uri``)."""
        return self.raw.getURI()

    def versions(self) -> tuple[str, str]:
        """(libvirt, hypervisor) versions as text (``virsh version``)."""
        def text(n: int) -> str:
            return f"{n // 1_000_000}.{n // 1000 % 1000}.{n % 1000}"
        return text(self.raw.getLibVersion()), text(self.raw.getVersion())

    def capabilities(self) -> HostCapabilities:
        """``virsh capabilities``, parsed (cached: it does not change while connected)."""
        if self._caps is None:
            self._caps = parse_capabilities(self._call("read the host capabilities", self.raw.getCapabilities))
        return self._caps

    def domain_type(self, verdict: host.KvmVerdict | None = None) -> DomainTypeChoice:
        """``kvm`` or ``qemu`` for the lab's Linux guest here (see :func:`choose_domain_type`).

        A type counts as offered when the capabilities list it *and* libvirt
        can describe a domain of that type (``virsh domcapabilities``).
        """
        verdict = verdict or host.inspect().verdict
        offered = []
        for virt_type in self.capabilities().domain_types():
            try:
                self.domain_capabilities(virt_type)
                offered.append(virt_type)
            except VirtError:
                pass
        return choose_domain_type(offered, verdict)

    def domain_capabilities(self, virt_type: str) -> DomainCapabilities:
        """``virsh domcapabilities --virttype TYPE``: what a domain of that type may use here."""
        text = self._call(f"read the domain capabilities for type {virt_type}",
                          self.raw.getDomainCapabilities, None, "x86_64", None, virt_type)
        root = ET.fromstring(text)
        vcpu = root.find("vcpu")
        return DomainCapabilities(root.findtext("domain", virt_type), root.findtext("path", ""),
                                  root.findtext("machine", ""), int(vcpu.get("max", "0")) if vcpu is not None else 0)

    def define(self, guest: DomainSpec | str) -> Domain:
        """Define a domain from a spec or XML text (``virsh define``); see :class:`Domain`."""
        return Domain(self, guest)

    def transient(self, guest: DomainSpec | str) -> Domain:
        """A domain with no stored definition (``virsh create`` at :meth:`Domain.start`): nothing outlives it.

        For a guest that only runs once (``labkit virt boot``): killed with its
        owner, it leaves no definition behind either.
        """
        return Domain(self, guest, persistent=False)

    def reclaim(self) -> tuple[str, ...]:
        """Remove this user's lab domains whose labkit process is gone (and their QEMU logs); their names.

        Runs before every new domain, so a notebook killed yesterday does not
        leave its definition waiting for ``labkit cleanup``.  Domains of live
        processes, of other users and without an owner pid are left alone.
        """
        orphans = []
        for name in self.domains():
            owner = _owner_pid(name)
            if owner is not None and owner != os.getpid() and not runtime.owner_alive(owner, os.geteuid()):
                orphans.append(name)
        removed = self.cleanup(orphans) if orphans else ()
        if not uri_parts(self.choice.uri).remote:  # the logs of gone domains of dead owners (transient ones too)
            logs, defined = qemu_log_path(self.choice.uri, runtime.prefix()).parent, set(self.domains())
            with contextlib.suppress(OSError):
                for log in logs.glob(f"{runtime.prefix()}*.log"):
                    name = log.name.removesuffix(".log")
                    owner = _owner_pid(name)
                    if name in removed or (owner is not None and owner != os.getpid() and name not in defined
                                           and not runtime.owner_alive(owner, os.geteuid())):
                        log.unlink(missing_ok=True)
        return removed

    def alive(self) -> bool:
        """Whether the daemon is still at the other end (``virConnectIsAlive``)."""
        try:
            return bool(self.raw.isAlive())
        except libvirt.libvirtError:
            return False

    def reconnect(self) -> None:
        """Open the same URI again after the daemon went away (killed, restarted)."""
        with contextlib.suppress(libvirt.libvirtError):
            self.raw.close()
        try:
            self.raw = libvirt.open(self.choice.uri)
        except libvirt.libvirtError as exc:
            raise _translate(exc, self.choice.uri, "connect again") from exc

    def domains(self, prefix: str | None = None) -> tuple[str, ...]:
        """Names of this user's labkit domains (``virsh list --all``, filtered by the lab prefix).

        ``prefix`` picks another user's (``runtime.prefix(user)``), or all users' lab domains (``"labkit-"``).
        """
        mine = prefix or runtime.prefix()
        return tuple(sorted(d.name() for d in self._call("list domains", self.raw.listAllDomains)
                            if d.name().startswith(mine)))

    def all_stats(self) -> dict[str, DomainStats]:
        """``virsh domstats``: statistics of every labkit domain of this user (getAllDomainStats)."""
        records = self._call("read domain statistics", self.raw.getAllDomainStats, _STATS)
        mine = runtime.prefix()
        return {d.name(): DomainStats.from_record(r) for d, r in records if d.name().startswith(mine)}

    def cleanup(self, names: Iterable[str] | None = None, prefix: str | None = None) -> tuple[str, ...]:
        """Destroy and undefine every domain of this user's labkit prefix (only ``names``, if given); return them.

        For leftovers of a crashed kernel or a killed process: domains of
        other users or outside the lab are never touched (``prefix`` as in
        :meth:`domains`).  ``labkit cleanup`` decides which are leftovers.
        """
        removed = []
        wanted = None if names is None else set(names)
        for name in (n for n in self.domains(prefix) if wanted is None or n in wanted):
            try:
                _remove(self.raw.lookupByName(name))
                removed.append(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # gone meanwhile: fine
                    raise _translate(exc, self.choice.uri, f"remove {name}") from exc
        return tuple(removed)

    def close(self) -> None:
        """Close the connection (idempotent), first destroying and undefining the domains defined on it."""
        runtime.forget(self._token)
        for dom in list(self._domains):
            dom.close()
        try:
            self.raw.close()
        except libvirt.libvirtError:
            pass  # already closed, or the daemon went away

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, action: str, fn: Callable, *args):
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise _translate(exc, self.choice.uri, action) from exc


def connect(uri: str | None = None, *, start_daemon: bool = True) -> Connection:
    """Open the lab's libvirt connection (``virsh -c URI``), starting the system daemon if needed.

    As root on ``qemu:///system`` with no daemon running, labkit configures
    and starts one (:func:`labkit.libvirtd.start`) unless ``start_daemon`` is
    false.  The returned :class:`Connection` says which URI and why.
    """
    choice = UriChoice(uri, "asked for explicitly") if uri else choose_uri()
    daemon = None
    if choice.uri == SYSTEM_URI and start_daemon and os.geteuid() == 0:
        daemon = libvirtd.start()
        choice = UriChoice(choice.uri, f"{choice.reason}; {daemon.detail}")
    libvirtd.quiet_libvirt()
    _event_loop()
    try:
        raw = libvirt.open(choice.uri)
    except libvirt.libvirtError as exc:
        raise _translate(exc, choice.uri, "connect") from exc
    return Connection(raw, choice, daemon)


def _owner_pid(name: str) -> int | None:
    """The labkit process a domain name ``labkit-<user>-<name>-<pid>`` says made it."""
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


# --------------------------------------------------------------------------- domain description → XML


@dataclass(frozen=True)
class DomainSpec:
    """A direct-kernel-boot guest: what the lab's domains are made of.

    ``name`` is the short name; the domain is called ``labkit-<user>-<name>``.
    ``console_log`` None lets :class:`Domain` put the serial console in a
    scratch file of its own.
    """

    name: str
    kernel: Path
    initrd: Path | None = None
    cmdline: str = "console=ttyS0"
    memory_mib: int = 256
    vcpus: int = 1
    domain_type: str = "qemu"
    console_log: Path | None = None
    machine: str = "pc"
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @classmethod
    def for_image(cls, name: str, image: images.GuestImage, **options) -> DomainSpec:
        """The tiny guest as a domain, booting its uncompressed ``vmlinux`` when the image has one.

        QEMU enters a vmlinux at its PVH entry point also on ``-M pc``: no
        in-guest decompression, about a third less boot time under TCG.
        """
        return cls(name, image.vmlinux or image.kernel, image.initrd, image.cmdline, **options)

    @property
    def domain_name(self) -> str:
        """``labkit-<user>-<name>-<pid>``: no clash between users, nor between two notebooks of one user."""
        return f"{runtime.prefix()}{self.name}-{os.getpid()}"

    def validate(self) -> None:
        """Raise a labkit error for anything libvirt or QEMU would reject later, less clearly."""
        if not self.name or len(self.name) > 40 or not set(self.name) <= _NAME_CHARS:
            raise InvalidOptionError(f"domain name {self.name!r} must be 1-40 characters of a-z, 0-9, '_', '.', '-'",
                                     "pass a short lowercase name such as 'tiny'")
        images.check_guest(self.memory_mib, self.vcpus, self.cmdline)
        if self.domain_type not in ("kvm", "qemu"):
            raise InvalidOptionError(f"domain type must be 'kvm' or 'qemu', not {self.domain_type!r}",
                                     "use Connection.domain_type() to pick the right one for this host")
        _require_files(str(self.kernel), str(self.initrd) if self.initrd else None)


def domain_xml(spec: DomainSpec) -> str:
    """The libvirt domain XML for ``spec`` (``virsh dumpxml`` shows the daemon's fuller version).

    ``<acpi/>`` is there because without it the guest's ``poweroff`` does not
    end the domain; ``on_*`` = destroy so a guest that reboots or panics ends.
    """
    spec.validate()
    dom = ET.Element("domain", type=spec.domain_type)
    ET.SubElement(dom, "name").text = spec.domain_name
    ET.SubElement(dom, "uuid").text = spec.uuid
    ET.SubElement(dom, "title").text = "KVM Lab tiny guest"
    ET.SubElement(dom, "memory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(dom, "vcpu").text = str(spec.vcpus)
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine=spec.machine).text = "hvm"
    ET.SubElement(os_el, "kernel").text = str(spec.kernel)
    if spec.initrd is not None:
        ET.SubElement(os_el, "initrd").text = str(spec.initrd)
    ET.SubElement(os_el, "cmdline").text = spec.cmdline
    ET.SubElement(ET.SubElement(dom, "features"), "acpi")
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        ET.SubElement(dom, event).text = "destroy"
    devices = ET.SubElement(dom, "devices")
    if spec.console_log is not None:
        serial = ET.SubElement(devices, "serial", type="file")
        ET.SubElement(serial, "source", path=str(spec.console_log), append="on")  # else each start truncates it
        ET.SubElement(serial, "target", port="0")
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode")


def _parse_domain_xml(text: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise DomainXmlError(f"the domain XML is not well-formed: {exc}",
                             "check the tags are closed and quoted, e.g. print(virt.domain_xml(spec))") from exc


def _own_xml(text: str) -> str:
    """Check the XML names a domain of this user's lab prefix; give it a UUID if it has none.

    The UUID is how labkit finds its own domain again when a define was
    interrupted before libvirt's answer arrived.
    """
    root = _parse_domain_xml(text)
    name = root.findtext("name") or ""
    if not name.startswith(runtime.prefix()):
        raise InvalidOptionError(f"domain name {name!r} lacks the lab prefix {runtime.prefix()!r}",
                                 "labkit only manages domains it names; use DomainSpec(name=...), which "
                                 "adds the prefix")
    if root.find("uuid") is None:
        ET.SubElement(root, "uuid").text = str(uuid.uuid4())
        return ET.tostring(root, encoding="unicode")
    return text


def _require_files(kernel: str | None, initrd: str | None) -> None:
    """The kernel and initramfs a direct-kernel-boot domain names must exist (QEMU fails late otherwise)."""
    for what, path in (("kernel", kernel), ("initramfs", initrd)):
        if path and not Path(path).is_file():
            raise MissingKernelError(f"the guest {what} {path} does not exist",
                                     "build the tiny guest first: labkit.images.tiny_guest() (or ./kvmlab setup)")


# --------------------------------------------------------------------------- events and stats


@dataclass(frozen=True)
class LifecycleEvent:
    """One lifecycle event libvirt sent for a domain (``virsh event --event lifecycle``)."""

    at: float  # seconds since the Domain object was created
    event: str  # one of EVENTS
    detail: str  # e.g. 'booted', 'destroyed', 'shutdown'

    def __str__(self) -> str:
        return f"{self.at:6.2f} s  {self.event} ({self.detail})"


@dataclass(frozen=True)
class DomainStats:
    """State, CPU time and memory of a domain, from ``virDomainListGetStats`` (``virsh domstats``).

    Counters a stopped domain does not have are 0.
    """

    state: str
    cpu_time_ns: int  # all of QEMU's threads: vCPUs, main loop, I/O (as the host kernel accounts them)
    vcpu_time_ns: int  # only the vCPU threads: time the guest's CPUs really ran
    vcpus: int
    memory_kib: int  # balloon.current: memory the guest has now
    max_memory_kib: int
    rss_kib: int  # host memory QEMU really uses for it

    @classmethod
    def from_record(cls, record: Mapping[str, int]) -> DomainStats:
        vcpus = record.get("vcpu.current", 0)
        return cls(state=STATES[record.get("state.state", 0)], cpu_time_ns=record.get("cpu.time", 0),
                   vcpu_time_ns=sum(record.get(f"vcpu.{i}.time", 0) for i in range(vcpus)),
                   vcpus=vcpus, memory_kib=record.get("balloon.current", 0),
                   max_memory_kib=record.get("balloon.maximum", 0), rss_kib=record.get("balloon.rss", 0))


# --------------------------------------------------------------------------- the domain


class Domain:
    """A libvirt domain labkit defined: a context manager that always destroys and undefines it.

    Defining happens in the constructor (``virsh define``).  ``close()`` —
    run by ``with``, on errors and ``KeyboardInterrupt``, and at interpreter
    exit — destroys the guest if it runs, undefines it and removes its
    scratch directory.  Lifecycle events arrive in ``events`` (in order)
    from libvirt's event loop thread; ``timeline`` holds seconds since
    creation of ``defined``, ``started`` and ``report`` (the first report
    line seen on the console).
    """

    def __init__(self, conn: Connection, guest: DomainSpec | str, *, persistent: bool = True) -> None:
        self.conn = conn
        self.persistent = persistent
        self.nonce: str | None = None  # marks the tiny guest's report and command output (images.with_nonce)
        self.lost_connection: str | None = None  # what libvirt said when the daemon went away under us
        self._closed = False
        self._t0 = time.monotonic()
        self._changed = threading.Condition()
        self.events: list[LifecycleEvent] = []
        self.timeline: dict[str, float] = {}
        self._listeners: list[Callable[[LifecycleEvent], None]] = []
        self._callback: int | None = None
        self._raw: libvirt.virDomain | None = None
        self._ours = False  # True once the name and UUID are known to be free: whatever has them is ours
        self._console_offset = 0
        self._scratch: Path | None = None
        self.name = self.uuid = ""
        self._token = runtime.release_at_exit(self.close)
        conn._domains.add(self)
        try:
            if isinstance(guest, DomainSpec):
                guest.validate()
                if guest.console_log is None or guest.initrd is not None:
                    self._scratch = runtime.scratch_dir("virt")
                if guest.console_log is None:
                    guest = replace(guest, console_log=self._scratch / "console.log")
                if guest.initrd is not None:
                    self.nonce = images.nonce()
                    try:
                        guest = replace(guest, initrd=images.with_nonce(guest.initrd, self._scratch, self.nonce))
                    except OSError as exc:
                        raise from_os_error(exc, f"copy the initramfs for {guest.name}") from None
                guest = domain_xml(guest)
            self.xml = _own_xml(guest)
            root = ET.fromstring(self.xml)
            self.name, self.uuid = root.findtext("name", ""), root.findtext("uuid", "")
            _require_files(root.findtext("os/kernel"), root.findtext("os/initrd"))
            source = root.find("devices/serial[@type='file']/source")
            self.console_log = Path(source.get("path", "")) if source is not None else None
            self._claim(conn)
            self._callback = conn._call("listen to lifecycle events", conn.raw.domainEventRegisterAny, None,
                                        libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event, None)
            conn.reclaim()
            if persistent:
                self._raw = conn._call(f"define {self.name}", conn.raw.defineXMLFlags, self.xml,
                                       libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
                self.timeline["defined"] = self._elapsed()
        except BaseException:
            self.close()
            raise

    def _claim(self, conn: Connection) -> None:
        """Refuse a name or UUID that is taken: libvirt would silently *redefine* that domain."""
        for what, lookup, key in (("name", conn.raw.lookupByName, self.name),
                                  ("UUID", conn.raw.lookupByUUIDString, self.uuid)):
            try:
                lookup(key)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise _translate(exc, conn.choice.uri, f"look up {key}") from exc
                continue
            raise DuplicateDomainError(f"a domain with the {what} {key} already exists", _DUPLICATE_FIX)
        self._ours = True

    # ----------------------------------------------------------------- events

    def _elapsed(self) -> float:
        return time.monotonic() - self._t0

    def _on_event(self, _conn, dom, event: int, detail: int, _opaque) -> None:
        """libvirt's event loop thread: record this domain's lifecycle events, tell listeners."""
        if dom.UUIDString() != self.uuid:
            return
        ev = LifecycleEvent(self._elapsed(), EVENTS[event] if event < len(EVENTS) else str(event),
                            _DETAILS.get(event, {}).get(detail, str(detail)))
        with self._changed:
            self.events.append(ev)
            self._changed.notify_all()
        for listener in list(self._listeners):
            try:
                listener(ev)
            except Exception:  # noqa: BLE001 - a broken view must not kill libvirt's event loop
                pass

    def on_event(self, listener: Callable[[LifecycleEvent], None]) -> Callable[[], None]:
        """Call ``listener(event)`` for each later lifecycle event; returns a function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def wait_for_event(self, event: str, detail: str | None = None, timeout: float = 10.0) -> LifecycleEvent:
        """Block until a lifecycle ``event`` (and ``detail``, e.g. ``'stopped', 'shutdown'``) has arrived.

        Returns the first such event in this Domain's life (``events`` keeps them all).
        """
        def match(e: LifecycleEvent) -> bool:
            return e.event == event and detail in (None, e.detail)
        with self._changed:
            if not self._changed.wait_for(lambda: any(map(match, self.events)), timeout):
                raise VirtError(f"no {event!r} {detail or ''} event for {self.name} within {timeout} s "
                                f"(events so far: {[str(e) for e in self.events]})",
                                "is libvirt's event loop running? virt.connect() starts it")
            return next(filter(match, self.events))

    # ----------------------------------------------------------------- lifecycle

    @property
    def raw(self) -> libvirt.virDomain:
        """The libvirt-python ``virDomain``, for calls labkit does not wrap."""
        if self._raw is None:
            raise VirtError(f"{self.name} is not defined (closed?)", "define a new one: conn.define(spec)")
        return self._raw

    def _do(self, action: str, fn: Callable, *args):
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise _translate(exc, self.conn.choice.uri, f"{action} {self.name}") from exc

    @property
    def state(self) -> str:
        """``virsh domstate``: 'running', 'paused', 'shut off', … (a transient domain not running: shut off)."""
        if self._raw is None and not self.persistent:
            return "shut off"
        try:
            return STATES[self.raw.state()[0]]
        except libvirt.libvirtError as exc:
            if not self.persistent and exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return "shut off"  # a transient domain ends with its QEMU
            raise _translate(exc, self.conn.choice.uri, f"read the state of {self.name}") from exc

    def start(self) -> None:
        """Boot the domain (``virsh start``; transient: ``virsh create``), tied to this connection (autodestroy)."""
        if self._closed:
            raise VirtError(f"{self.name} is not defined (closed)", "define a new one: conn.define(spec)")
        root = ET.fromstring(self.xml)
        _require_files(root.findtext("os/kernel"), root.findtext("os/initrd"))  # still there since define?
        if self.console_log is not None and self.console_log.exists():
            self._console_offset = self.console_log.stat().st_size  # the file is appended to across boots
        flags = _START_FLAGS if uri_parts(self.conn.choice.uri).driver != "test" else 0  # test: no autodestroy
        if self._raw is None and not self.persistent:  # transient: created and started in one step
            self._raw = self._do("create", self.conn.raw.createXML, self.xml, flags)
        else:
            self._do("start", self.raw.createWithFlags, flags)
        self.timeline["started"] = self._elapsed()

    def suspend(self) -> None:
        """Pause the vCPUs (``virsh suspend``): the QEMU process stays, the guest stops running."""
        self._do("suspend", self.raw.suspend)

    def resume(self) -> None:
        """Let the vCPUs run again (``virsh resume``)."""
        self._do("resume", self.raw.resume)

    def shutdown(self) -> None:
        """Ask the guest to power off via ACPI (``virsh shutdown``); it may ignore the request."""
        self._do("shut down", self.raw.shutdown)

    def destroy(self) -> None:
        """Pull the plug (``virsh destroy``): QEMU is killed; the definition stays."""
        self._do("destroy", _destroy, self.raw)

    def stats(self) -> DomainStats:
        """``virsh domstats NAME``: state, CPU time, vCPUs, memory."""
        records = self._do("read statistics of", self.conn.raw.domainListGetStats, [self.raw], _STATS)
        if not records:  # undefined by another thread meanwhile
            raise VirtError(f"{self.name} is gone: no statistics", "define a new one: conn.define(spec)")
        return DomainStats.from_record(records[0][1])

    def save(self, path: Path | None = None) -> Path:
        """Write the running guest's RAM and device state to a file and stop it (``virsh save``).

        Like hibernating: the QEMU process ends, the definition stays, and
        :meth:`restore` continues the guest where it was, in a new QEMU.
        """
        if path is None:
            self._scratch = self._scratch or runtime.scratch_dir("virt")
            path = self._scratch / "saved-state.img"
        self._do("save", self.raw.save, str(path))
        return Path(path)

    def restore(self, path: Path) -> None:
        """Continue a guest from a file :meth:`save` wrote (``virsh restore FILE``)."""
        self._do("restore", self.conn.raw.restore, str(path))

    def snapshot(self, name: str) -> str:
        """Take an internal snapshot, RAM and disks (``virsh snapshot-create-as NAME SNAP``); its name.

        QEMU keeps internal snapshots *inside* the guest's qcow2 disks, so a
        guest without a disk (like the lab's direct-kernel-boot guest) cannot
        have one: libvirt says so, and so does the :class:`VirtError`.
        """
        snap = ET.Element("domainsnapshot")
        ET.SubElement(snap, "name").text = name
        try:
            return self._do("snapshot", self.raw.snapshotCreateXML, ET.tostring(snap, encoding="unicode")).getName()
        except VirtError as exc:
            if ET.fromstring(self.live_xml()).find("devices/disk") is None:
                raise VirtError(f"{self.name} has no disk, and internal snapshots are stored inside the guest's "
                                f"qcow2 disks: libvirt refuses ({exc.what})",
                                "use save()/restore() (virsh save/restore) to keep a diskless guest's state, or "
                                "give the guest a qcow2 disk") from exc
            raise

    def live_xml(self) -> str:
        """``virsh dumpxml``: the definition as libvirt completed it (devices, addresses, defaults)."""
        return self._do("read the XML of", self.raw.XMLDesc)

    # ----------------------------------------------------------------- console

    def console(self) -> str:
        """What the guest printed on its serial console since the last start."""
        if self.console_log is None or not self.console_log.exists():
            return ""
        with open(self.console_log, "rb") as fh:
            fh.seek(self._console_offset)
            return fh.read().decode(errors="replace")

    def wait_for_line(self, prefix: str, timeout: float = 60.0) -> str:
        """Block until a console line starts with ``prefix``; return it.

        Fails fast with :class:`GuestBootError` (and the console's tail) when
        the domain stops first or the time is up.
        """
        if self.console_log is None:
            raise VirtError(f"{self.name} has no file console to read", "define it from a DomainSpec")
        deadline = time.monotonic() + timeout
        while True:
            stopped = self.state in ("shut off", "crashed")  # asked before reading: no line can slip by
            text = self.console()
            for line in text[:text.rfind("\n") + 1].splitlines():  # whole lines only: QEMU may be mid-line
                if line.startswith(prefix):
                    self.timeline.setdefault("report", self._elapsed())
                    return line
            if stopped or time.monotonic() > deadline:
                tail = "\n".join(self.console().splitlines()[-15:]) or "(the console is empty)"
                log = qemu_log_path(self.conn.choice.uri, self.name)
                try:  # QEMU's last words say who stopped it (e.g. "terminating on signal 15 from pid …")
                    qemu_says = "\n".join(log.read_text(errors="replace").splitlines()[-3:])
                except OSError:
                    qemu_says = f"(cannot read {log})"
                why = "the domain stopped" if stopped else f"{timeout:g} s passed"
                shown = (prefix.replace(f" {self.nonce}", "") if self.nonce else prefix).strip()
                panic = images.find_panic(text, self.nonce) if stopped else None
                if panic is not None:
                    raise GuestPanicError(f"{self.name}: {panic.what}", panic.fix)
                raise GuestBootError(f"{self.name}: {why} before a line starting {shown!r} appeared on "
                                     f"its console. Last console lines:\n{tail}\nQEMU's log ends:\n{qemu_says}",
                                     "a slow host? allow more time (labkit virt boot --timeout S, "
                                     "wait_for_report(timeout=S)); the console and log lines above are all there "
                                     "is: their files go with the domain")
            time.sleep(0.05)

    def wait_for_report(self, timeout: float = 60.0) -> images.GuestReport:
        """Block until the tiny guest's report line (with this domain's nonce) is on the console; return it parsed."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise InvalidOptionError(f"timeout={timeout!r}: must be a number of seconds above 0",
                                     "the tiny guest needs ~3-5 s under TCG here")
        self.wait_for_line(images.report_prefix(self.nonce), timeout)
        return images.parse_report(self.console(), self.nonce)

    def qemu_command_line(self) -> tuple[str, ...]:
        """The QEMU command line libvirt generated: from QEMU's log once started, else ``domxml-to-native``."""
        path = qemu_log_path(self.conn.choice.uri, self.name)
        if "started" in self.timeline and path.exists():
            argv = parse_qemu_log(path.read_text(errors="replace"))
            if argv:
                return argv
        native = self._do("convert to a QEMU command line", self.conn.raw.domainXMLToNative, "qemu-argv",
                          self.live_xml(), 0)
        return _strip_env(shlex.split(native))

    # ----------------------------------------------------------------- teardown

    def undefine(self) -> None:
        """Remove the definition (``virsh undefine``); the domain must not be running."""
        if self._raw is not None:
            self._do("undefine", self.raw.undefineFlags, _UNDEFINE_FLAGS)
            self._raw = None

    def close(self) -> None:
        """Destroy, undefine, stop listening and remove the scratch dir. Idempotent, never half-done."""
        runtime.forget(self._token)
        self._closed = True
        dom = self._raw
        if dom is None and self._ours:  # interrupted while defining: whatever has our UUID is ours
            try:
                dom = self.conn.raw.lookupByUUIDString(self.uuid)
            except libvirt.libvirtError:
                dom = None
        try:
            if dom is not None:
                try:
                    _remove(dom)
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        if self.conn.alive():
                            raise _translate(exc, self.conn.choice.uri, f"remove {self.name}") from exc
                        self._remove_after_reconnect(exc)
                self._raw = None
                if self.persistent and self.lost_connection is None:
                    with self._changed:  # let the 'undefined' event arrive, so `events` tells the whole life
                        self._changed.wait_for(lambda: any(e.event == "undefined" for e in self.events), 1.0)
        finally:
            if self._callback is not None:
                try:
                    self.conn.raw.domainEventDeregisterAny(self._callback)
                except libvirt.libvirtError:
                    pass  # the connection is gone already
                self._callback = None
            self._listeners.clear()
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)
                self._scratch = None
            if self._ours and not uri_parts(self.conn.choice.uri).remote:
                # libvirt keeps NAME.log after the domain is gone; the name dies with us, so does the log
                with contextlib.suppress(OSError):
                    qemu_log_path(self.conn.choice.uri, self.name).unlink(missing_ok=True)

    def _remove_after_reconnect(self, exc: libvirt.libvirtError) -> None:
        """The daemon went away under us (killed, restarted): connect again and remove the domain anyway.

        Says so with a warning naming libvirt's own words, since the guest
        may have run unmanaged meanwhile; raises only if the daemon does not
        come back.
        """
        cause = exc.get_error_message() or str(exc)
        try:
            self.conn.reconnect()
            _remove(self.conn.raw.lookupByUUIDString(self.uuid))
        except LabkitError as again:
            raise DaemonUnreachableError(
                f"cannot remove {self.name}: the libvirt daemon went away while it existed ({cause}), and "
                f"does not answer again ({again.what})",
                "start the daemon again (sudo .venv/bin/labkit virt up; qemu:///session starts by itself), "
                "then `labkit cleanup` removes the guest") from None
        except libvirt.libvirtError as again:
            if again.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise _translate(again, self.conn.choice.uri, f"remove {self.name}") from None
        self.lost_connection = cause
        warnings.warn(f"the libvirt daemon went away while {self.name} existed ({cause}): labkit connected to "
                      f"{self.conn.choice.uri} again and removed the domain", RuntimeWarning, stacklevel=3)

    def __enter__(self) -> Domain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<labkit.virt.Domain {self.name} on {self.conn.choice.uri}>"


# --------------------------------------------------------------------------- QEMU's command line


def qemu_log_path(uri: str, name: str) -> Path:
    """Where libvirt logs QEMU's command line and stderr for domain ``name``."""
    logs = libvirtd.session_qemu_logs() if uri_parts(uri).path == "/session" else libvirtd.SYSTEM_QEMU_LOGS
    return logs / f"{name}.log"


def qemu_pids(name: str) -> tuple[int, ...]:
    """PIDs of the QEMU processes running domain ``name`` (libvirt passes ``-name guest=NAME,…``)."""
    return tuple(proc.pid for proc in psutil.process_iter(["cmdline"])
                 if qemu_name(proc.info["cmdline"] or []) == f"guest={name}")


def qemu_name(argv: list[str]) -> str | None:
    """The ``-name`` label of a QEMU command line (``guest=NAME`` when libvirt started it); None if not QEMU."""
    if not argv or not Path(argv[0]).name.startswith("qemu-system") or "-name" not in argv[:-1]:
        return None
    return argv[argv.index("-name") + 1].split(",")[0]


def _strip_env(argv: list[str]) -> tuple[str, ...]:
    """Drop the ``VAR=value`` environment libvirt writes before the program."""
    i = 0
    while i < len(argv) and "=" in argv[i] and not argv[i].startswith("-") and "/" not in argv[i].split("=")[0]:
        i += 1
    return tuple(argv[i:])


def parse_qemu_log(text: str) -> tuple[str, ...]:
    """The command line of the *last* start recorded in a libvirt QEMU log (empty if none).

    libvirt writes ``… starting up …``, then the environment and the command
    line, one option per line, each ending in `` \\``.
    """
    starts = [i for i, line in enumerate(text.splitlines()) if ": starting up " in line]
    if not starts:
        return ()
    lines = text.splitlines()[starts[-1] + 1:]
    joined = []
    for line in lines:
        joined.append(line[:-1] if line.endswith("\\") else line)
        if not line.endswith("\\"):
            break
    return _strip_env(shlex.split(" ".join(joined)))


def option_groups(argv: Iterable[str]) -> dict[str, list[str]]:
    """A QEMU command line as ``{option: [values]}`` (the program under ``''``; flags get ``''``)."""
    argv = list(argv)
    groups: dict[str, list[str]] = {"": argv[:1]}
    i = 1
    while i < len(argv):
        opt = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None
        groups.setdefault(opt, []).append(value if value is not None else "")
        i += 2 if value is not None else 1
    return groups


@dataclass(frozen=True)
class OptionRow:
    """One QEMU option, as libvirt and as labkit.qemu use it ('' = flag without value, () = absent)."""

    option: str
    libvirt: tuple[str, ...]
    labkit: tuple[str, ...]


def compare_command_lines(libvirt_argv: Iterable[str], labkit_argv: Iterable[str]) -> tuple[OptionRow, ...]:
    """Side by side: every option either command line uses, in libvirt's order, then labkit's extras."""
    a, b = option_groups(libvirt_argv), option_groups(labkit_argv)
    order = list(a) + [opt for opt in b if opt not in a]
    return tuple(OptionRow(opt or "(program)", tuple(a.get(opt, ())), tuple(b.get(opt, ()))) for opt in order)


# --------------------------------------------------------------------------- the whole stack


@dataclass(frozen=True)
class StackLayer:
    """One layer of the KVM stack: its job, where the learner ran it, and what shows it on this host."""

    name: str
    role: str
    you_ran: str
    here: str


def kvm_stack(report: host.HostReport, conn: Connection, domain_type: str,
              qemu_argv: Iterable[str]) -> tuple[StackLayer, ...]:
    """Hardware → Linux kernel → KVM module → QEMU → libvirt, each with this host's live evidence.

    ``domain_type`` and ``qemu_argv`` are those of a guest libvirt ran here.
    """
    cpu, argv = report.cpu, list(qemu_argv)
    accel = argv[argv.index("-accel") + 1] if "-accel" in argv[:-1] else "?"
    modules = ", ".join(m.name for m in report.kernel.kvm_modules if m.state != "absent") or "none"
    libvirt_version, qemu_version = conn.versions()
    return (
        StackLayer("hardware", "runs the code; VT-x/AMD-V lets a CPU run a guest's kernel safely",
                   "01: host.inspect() read /proc/cpuinfo; 03: KVM_RUN ran your instructions",
                   f"{cpu.model_name}: " + (cpu.hardware_virtualization or "no VT-x/AMD-V flag")
                   + (" (inside a VM: nested)" if report.platform.virtual else "")),
        StackLayer("Linux kernel (host OS)", "schedules each vCPU as a thread, backs guest RAM with its memory",
                   "01: processes, memory and system calls of this kernel",
                   f"Linux {report.kernel.release}: each guest was an ordinary QEMU process of this kernel "
                   "(virt.qemu_pids found it)"),
        StackLayer("KVM module", "turns the kernel into a hypervisor: /dev/kvm and its ioctls",
                   "03: KVM_CREATE_VM, KVM_SET_USER_MEMORY_REGION, KVM_CREATE_VCPU, KVM_RUN",
                   f"modules: {modules}; /dev/kvm " + ("present" if report.kvm.present else "absent")
                   + f"; {report.verdict.label}"),
        StackLayer("QEMU", "emulates a whole PC (devices, firmware); runs the CPU with KVM or with TCG",
                   "04: qemu-system-x86_64 booted the tiny Linux guest",
                   f"QEMU {qemu_version}: libvirt ran {Path(argv[0]).name if argv else '?'} -accel {accel}"),
        StackLayer("libvirt", "manages guests: definitions, lifecycle, events, stats, remote URIs",
                   "05: virt.connect(), define, start, suspend, save/restore, destroy, undefine",
                   f"libvirt {libvirt_version} on {conn.choice.uri}: domain type '{domain_type}'"),
    )
