"""A libvirt domain labkit defined: lifecycle, events, console, and a teardown that always happens."""

from __future__ import annotations

import contextlib
import shlex
import shutil
import threading
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import libvirt

from labkit import images, runtime
from labkit.errors import (
    GuestPanicError,
    GuestStoppedError,
    GuestTimeoutError,
    InvalidOptionError,
    LabkitError,
    console_tail,
    from_os_error,
)
from labkit.i18n import Phrase, _
from labkit.i18n import noop as N_
from labkit.virt.cmdline import _strip_env, parse_qemu_log, qemu_log_path
from labkit.virt.errors import _DUPLICATE_FIX, DaemonUnreachableError, DuplicateDomainError, VirtError, _translate
from labkit.virt.spec import DomainSpec, _own_xml, _require_files, domain_xml
from labkit.virt.state import STATES, STATS_FLAGS, UNDEFINE_FLAGS, DomainStats, destroy_domain, remove_domain
from labkit.virt.uri import uri_parts

if TYPE_CHECKING:  # the connection module makes domains (Connection.define): no import back at run time
    from labkit.virt.connection import Connection

T = TypeVar("T")

#: virDomainEventType, in enum order, as ``virsh event --event lifecycle`` prints them.
EVENTS = ("defined", "undefined", "started", "suspended", "resumed", "stopped", "shutdown", "pmsuspended",
          "crashed")

#: Every start is tied to the connection that made it: when the owner dies (kill -9 of a notebook
#: kernel or of ``labkit virt boot``), libvirt destroys the guest itself.
_START_FLAGS = libvirt.VIR_DOMAIN_START_AUTODESTROY


def _event_details(event: str) -> dict[int, str]:
    """libvirt's detail codes of one lifecycle event (``VIR_DOMAIN_EVENT_STOPPED_*`` …) by number."""
    prefix = f"VIR_DOMAIN_EVENT_{event.upper()}_"
    return {value: name[len(prefix):].lower().replace("_", " ") for name, value in vars(libvirt).items()
            if name.startswith(prefix) and isinstance(value, int) and not name.endswith("_LAST")}


#: libvirt's detail names of each lifecycle event, by event number then detail code (virsh's words).
EVENT_DETAILS = {i: _event_details(name) for i, name in enumerate(EVENTS)}

#: The lifecycle events that start or end a QEMU process (``resumed`` or ``suspended`` do neither).
_RUN_EVENTS = ("started", "stopped", "crashed")

#: Seconds between two reads of the console file while waiting for a line (half of it is added latency).
CONSOLE_POLL_S = 0.02


@dataclass(frozen=True)
class LifecycleEvent:
    """One lifecycle event libvirt sent for a domain (``virsh event --event lifecycle``)."""

    at: float  # seconds since the Domain object was created
    event: str  # one of EVENTS
    detail: str  # e.g. 'booted', 'destroyed', 'shutdown'

    def __str__(self) -> str:
        return f"{self.at:6.2f} s  " + _words(self)


def event_list(events: Iterable[LifecycleEvent]) -> str:
    """``defined (added); started (booted); …`` in the learner's language (``virsh event``'s words in English)."""
    return "; ".join(map(_words, events))


def _words(event: LifecycleEvent) -> str:
    """``started (booted)`` in the learner's language."""
    return _(event.event) + " (" + _(event.detail) + ")"


#: The events and their details as the learner reads them (the data keeps libvirt's words; see EVENTS).
EVENT_WORDS = (N_("defined"), N_("undefined"), N_("started"), N_("suspended"), N_("resumed"), N_("stopped"),
               N_("shutdown"), N_("pmsuspended"), N_("crashed"), N_("added"), N_("from snapshot"), N_("renamed"),
               N_("updated"), N_("removed"), N_("booted"), N_("migrated"), N_("restored"), N_("wakeup"),
               N_("api error"), N_("ioerror"), N_("paused"), N_("postcopy"), N_("postcopy failed"), N_("watchdog"),
               N_("unpaused"), N_("destroyed"), N_("failed"), N_("saved"), N_("finished"), N_("guest"), N_("host"),
               N_("disk"), N_("memory"), N_("crashloaded"), N_("panicked"))


class Domain:
    """A libvirt domain labkit defined: a context manager that always destroys and undefines it.

    :meth:`define` (``Connection.define``/``transient``) makes one.  ``close()`` —
    run by ``with``, on errors and ``KeyboardInterrupt``, and at interpreter
    exit — destroys the guest if it runs, undefines it and removes its
    scratch directory.  Lifecycle events arrive in ``events`` (in order)
    from libvirt's event loop thread; ``timeline`` holds seconds since
    creation of ``defined``, ``started`` and ``report`` (the first report
    line seen on the console).  ``exit_hook`` is the ``runtime.release_at_exit``
    token of ``close`` (dropped once closed: ``runtime.release_pending``).
    """

    def __init__(self, conn: Connection, *, persistent: bool = True) -> None:
        """An empty handle on ``conn``: no libvirt call, no file, no exit hook (:meth:`define` makes a domain)."""
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
        self._unwatch: Callable[[], None] | None = None
        self._raw: libvirt.virDomain | None = None
        self._ours = False  # True once the name and UUID are known to be free: whatever has them is ours
        self._console_offset = 0
        self._scratch: Path | None = None
        self.name = self.uuid = self.xml = ""
        self.console_log: Path | None = None
        self.exit_hook: int | None = None

    @classmethod
    def define(cls, conn: Connection, guest: DomainSpec | str, *, persistent: bool = True) -> Domain:
        """A domain of ``guest`` on ``conn``: its scratch dir and XML made, its name and UUID claimed, its
        events watched and (``persistent``) its definition stored (``virsh define``).

        Everything it made is released by :meth:`close` (here too, on an error or an interrupt half-way).
        It sweeps nothing: :meth:`Connection.reclaim` removes dead owners' domains, called by the connection.
        """
        dom = cls(conn, persistent=persistent)
        dom.exit_hook = runtime.release_at_exit(dom.close)
        conn.close_with(dom)
        try:
            dom._describe(guest)
            dom._claim(conn)
            dom._unwatch = conn.watch_lifecycle(dom.uuid, dom._on_event)
            if persistent:
                dom._raw = conn.call(f"define {dom.name}", conn.raw.defineXMLFlags, dom.xml,
                                     libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
                dom.timeline["defined"] = dom._elapsed()
        except BaseException:
            dom.close()
            raise
        return dom

    def _describe(self, guest: DomainSpec | str) -> None:
        """The XML of ``guest`` with this lab's name; a spec's console log and nonce'd initramfs in a scratch dir."""
        if isinstance(guest, DomainSpec):
            guest.validate()
            if guest.console_log is None or guest.initrd is not None:
                self._scratch = scratch = runtime.scratch_dir("virt")
                if guest.console_log is None:
                    guest = replace(guest, console_log=scratch / "console.log")
                if guest.initrd is not None:
                    self.nonce = images.nonce()
                    try:
                        guest = replace(guest, initrd=images.with_nonce(guest.initrd, scratch, self.nonce))
                    except OSError as exc:
                        raise from_os_error(exc, f"copy the initramfs for {guest.name}") from None
            guest = domain_xml(guest)
        self.xml = _own_xml(guest)
        root = ET.fromstring(self.xml)
        self.name, self.uuid = root.findtext("name", ""), root.findtext("uuid", "")
        _require_files(root.findtext("os/kernel"), root.findtext("os/initrd"))
        source = root.find("devices/serial[@type='file']/source")
        self.console_log = Path(source.get("path", "")) if source is not None else None

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

    def _on_event(self, event: int, detail: int) -> None:
        """libvirt's event loop thread: record this domain's lifecycle events, tell listeners."""
        ev = LifecycleEvent(self._elapsed(), EVENTS[event] if event < len(EVENTS) else str(event),
                            EVENT_DETAILS.get(event, {}).get(detail, str(detail)))
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

    def _do(self, action: str, fn: Callable[..., T], *args: Any) -> T:
        """A libvirt call about this domain (:meth:`Connection.call`, the domain's name added to ``action``)."""
        return self.conn.call(f"{action} {self.name}", fn, *args)

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
        self._do("destroy", destroy_domain, self.raw)

    def stats(self) -> DomainStats:
        """``virsh domstats NAME``: state, CPU time, vCPUs, memory."""
        records = self._do("read statistics of", self.conn.raw.domainListGetStats, [self.raw], STATS_FLAGS)
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
                raise VirtError(Phrase(N_("{name} has no disk, and internal snapshots are stored inside the guest's "
                                          "qcow2 disks: libvirt refuses ({error})"), name=self.name, error=exc.what),
                                Phrase(N_("use save()/restore() (virsh save/restore) to keep a diskless guest's "
                                          "state, or give the guest a qcow2 disk"))) from exc
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

        Fails fast with :class:`~labkit.errors.GuestStoppedError` when the
        domain stops first, :class:`~labkit.errors.GuestTimeoutError` when the
        time is up (both with the console's tail).
        """
        if self.console_log is None:
            raise VirtError(f"{self.name} has no file console to read", "define it from a DomainSpec")
        deadline = time.monotonic() + timeout
        while True:
            stopped = self._stopped()  # asked before reading: no line can slip by
            text = self.console()
            for line in text[:text.rfind("\n") + 1].splitlines():  # whole lines only: QEMU may be mid-line
                if line.startswith(prefix):
                    self.timeline.setdefault("report", self._elapsed())
                    return line
            if stopped or time.monotonic() > deadline:
                tail = console_tail(self.console())
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
                error = GuestStoppedError if stopped else GuestTimeoutError
                raise error(f"{self.name}: {why} before a line starting {shown!r} appeared on its console. Last "
                            f"console lines:\n{tail}\nQEMU's log ends:\n{qemu_says}",
                            "a slow host? allow more time (labkit virt boot --timeout S, wait_for_report(timeout=S)); "
                            "the console and log lines above are all there is: their files go with the domain")
            with self._changed:  # a lifecycle event (the guest stopped) wakes us at once
                self._changed.wait(CONSOLE_POLL_S)

    def _stopped(self) -> bool:
        """Whether the guest has stopped since it last started, without asking libvirt while it runs.

        The lifecycle events say it first.  libvirt is asked (``state``) only
        when they say stopped, or say nothing yet: while the daemon tears a
        guest down (it powered off after its report) it holds the domain's
        lock, and a ``state`` call waits for the whole teardown — 1.3 s
        here.  Asking on every poll made every boot whose report came
        just before its power-off that much slower (the bimodal libvirt boot
        time of issue 17).  The answer confirms a stop event, which may be a
        late one from before a restart.
        """
        with self._changed:
            last = next((e.event for e in reversed(self.events) if e.event in _RUN_EVENTS), None)
        return last != "started" and self.state in ("shut off", "crashed")

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
            self._do("undefine", self.raw.undefineFlags, UNDEFINE_FLAGS)
            self._raw = None

    def close(self) -> None:
        """Destroy, undefine, stop listening and remove the scratch dir. Idempotent, never half-done."""
        if self.exit_hook is not None:
            runtime.forget(self.exit_hook)
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
                    remove_domain(dom)
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        if self.conn.alive():
                            raise _translate(exc, self.conn.choice.uri, f"remove {self.name}") from exc
                        self._remove_after_reconnect(exc)
                self._raw = None
                if self.lost_connection is None:  # let the last event arrive, so `events` tells the whole life
                    last = "undefined" if self.persistent else "stopped"  # a transient domain ends when it stops
                    with self._changed:
                        self._changed.wait_for(lambda: any(e.event == last for e in self.events), 1.0)
        finally:
            if self._unwatch is not None:
                self._unwatch()
                self._unwatch = None
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
            remove_domain(self.conn.raw.lookupByUUIDString(self.uuid))
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
