"""An open libvirt connection: the daemon, the lab's domains on it, their statistics and cleanup."""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import libvirt

from labkit import host, libvirtd, runtime
from labkit.virt.capabilities import (
    DomainCapabilities,
    DomainTypeChoice,
    HostCapabilities,
    choose_domain_type,
    parse_capabilities,
)
from labkit.virt.cmdline import qemu_log_path
from labkit.virt.errors import VirtError, _translate
from labkit.virt.state import STATS_FLAGS, DomainStats, remove_domain
from labkit.virt.uri import SYSTEM_URI, UriChoice, choose_uri, uri_parts

if TYPE_CHECKING:
    from labkit.virt.domain import Domain
    from labkit.virt.spec import DomainSpec

T = TypeVar("T")

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
        self._watchers: dict[str, Callable[[int, int], None]] = {}  # domain UUID -> its lifecycle handler
        self._lifecycle_id: int | None = None  # the one libvirt registration that serves them all
        self._watch_lock = threading.Lock()
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
            self._caps = parse_capabilities(self.call("read the host capabilities", self.raw.getCapabilities))
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
        text = self.call(f"read the domain capabilities for type {virt_type}",
                          self.raw.getDomainCapabilities, None, "x86_64", None, virt_type)
        root = ET.fromstring(text)
        vcpu = root.find("vcpu")
        return DomainCapabilities(root.findtext("domain", virt_type), root.findtext("path", ""),
                                  root.findtext("machine", ""), int(vcpu.get("max", "0")) if vcpu is not None else 0)

    def define(self, guest: DomainSpec | str) -> Domain:
        """Define a domain from a spec or XML text (``virsh define``); see :class:`Domain`."""
        from labkit.virt.domain import Domain  # the domain module builds on this one
        self.reclaim()
        return Domain.define(self, guest)

    def transient(self, guest: DomainSpec | str) -> Domain:
        """A domain with no stored definition (``virsh create`` at :meth:`Domain.start`): nothing outlives it.

        For a guest that only runs once (``labkit virt boot``): killed with its
        owner, it leaves no definition behind either.
        """
        from labkit.virt.domain import Domain
        self.reclaim()
        return Domain.define(self, guest, persistent=False)

    def reclaim(self) -> tuple[str, ...]:
        """Remove this user's lab domains whose labkit process is gone (and their QEMU logs); their names.

        :meth:`define` and :meth:`transient` run it before each new domain, so a notebook killed
        yesterday does not leave its definition waiting for ``labkit cleanup``.  Domains of live
        processes, of other users and without an owner pid are left alone.
        """
        orphans = []
        for name in self.domains():
            owner = runtime.name_owner(name)
            if owner is not None and owner != os.getpid() and not runtime.owner_alive(owner, os.geteuid()):
                orphans.append(name)
        removed = self.cleanup(orphans) if orphans else ()
        if not uri_parts(self.choice.uri).remote:  # the logs of gone domains of dead owners (transient ones too)
            logs, defined = qemu_log_path(self.choice.uri, runtime.prefix()).parent, set(self.domains())
            with contextlib.suppress(OSError):
                for log in logs.glob(f"{runtime.prefix()}*.log"):
                    name = log.name.removesuffix(".log")
                    owner = runtime.name_owner(name)
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
        with self._watch_lock:  # the registration died with the old connection
            self._lifecycle_id = None
            if self._watchers:
                self._listen()

    def watch_lifecycle(self, uuid: str, handler: Callable[[int, int], None]) -> Callable[[], None]:
        """Call ``handler(event, detail)`` (from libvirt's event thread) for each lifecycle event of the domain
        with ``uuid``; return the function that stops it.

        One libvirt registration per connection serves every domain on it: libvirt tracks one callback per
        event and domain filter on a connection and refuses a second ("event callback already tracked"), so
        two live domains registering their own would collide.
        """
        with self._watch_lock:
            if self._lifecycle_id is None:
                self._listen()
            self._watchers[uuid] = handler

        def stop() -> None:
            with self._watch_lock:
                self._watchers.pop(uuid, None)
                if not self._watchers and self._lifecycle_id is not None:
                    with contextlib.suppress(libvirt.libvirtError):  # the connection may be gone already
                        self.raw.domainEventDeregisterAny(self._lifecycle_id)
                    self._lifecycle_id = None
        return stop

    def _listen(self) -> None:
        self._lifecycle_id = self.call("listen to lifecycle events", self.raw.domainEventRegisterAny, None,
                                       libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)

    def _on_lifecycle(self, _conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int,
                      _opaque: object) -> None:
        handler = self._watchers.get(dom.UUIDString())
        if handler is not None:
            handler(event, detail)

    def domains(self, prefix: str | None = None) -> tuple[str, ...]:
        """Names of this user's labkit domains (``virsh list --all``, filtered by the lab prefix).

        ``prefix`` picks another user's (``runtime.prefix(user)``), or all users' lab domains (``"labkit-"``).
        """
        mine = prefix or runtime.prefix()
        return tuple(sorted(d.name() for d in self.call("list domains", self.raw.listAllDomains)
                            if d.name().startswith(mine)))

    def all_stats(self) -> dict[str, DomainStats]:
        """``virsh domstats``: statistics of every labkit domain of this user (getAllDomainStats)."""
        records = self.call("read domain statistics", self.raw.getAllDomainStats, STATS_FLAGS)
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
                remove_domain(self.raw.lookupByName(name))
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

    def call(self, action: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, a libvirt call on this connection, with its failure raised as the labkit error for
        ``action`` (e.g. "define tiny": "cannot define tiny on qemu:///system: …")."""
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise _translate(exc, self.choice.uri, action) from exc

    def close_with(self, domain: Domain) -> None:
        """Close ``domain`` (destroy, undefine) when this connection closes, if it is still open then."""
        self._domains.add(domain)


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
