"""``labkit cleanup``: find what the lab left behind on this host, and remove it.

A notebook kernel that was killed, or a script that got SIGKILL, cannot run
its own cleanup (context managers, exit hooks).  What can stay behind, and
how it is found — by the lab's names (``labkit-<user>-``, see
:mod:`labkit.runtime`) only, never anything else:

* **domain** — a libvirt domain ``labkit-<user>-<name>-<pid>``: the daemon
  keeps running it (or keeps its definition) after its process is gone.
  Removed through libvirt (:meth:`labkit.virt.Connection.cleanup`).
* **qemu** — a ``qemu-system-*`` process of that user whose ``-name`` is
  ``labkit-<user>-…`` and that no domain accounts for.  labkit.qemu's QEMU
  dies with its process (``PR_SET_PDEATHSIG``), so this is rare: a QEMU
  whose libvirt daemon was killed, or one started by hand with the lab's name.
* **dir** — a scratch dir ``<purpose>-<pid>-…`` in the user's run dir
  ``/tmp/labkit-<user>`` (consoles, QEMU's output, saved guest state).
* **log** — libvirt's QEMU log ``labkit-<user>-….log`` of a domain that is gone.
* **kernelfile** — a Jupyter connection file ``/tmp/tmp*.json`` whose kernel
  is gone (a ``labkit run`` killed mid-notebook; :func:`labkit.runtime.orphan_kernel_files`).
* **squatted** — (``all_users`` only) a ``/tmp/labkit-<user>`` that is not
  that user's private directory: another user made it, or it is a symlink.
  That user's labkit falls back to a private dir of its own; the squatted
  name is reported, and removed with ``force``.

The guest image cache is only touched by ``labkit cleanup --cache``
(:func:`labkit.images.clear_cache`).  Most of these are also reclaimed
without a cleanup: libvirt destroys a dead owner's guests (autodestroy),
the next lab process removes dead processes' scratch dirs and domain
definitions, and the next ``labkit run`` dead kernels' connection files.

**What a plain cleanup removes: orphans only.**  Every name carries the pid
of the labkit process that made it.  A thing is an *orphan* when that
process is gone (or the pid now belongs to another process: checked by user
and start time).  A student who runs ``labkit cleanup`` in a terminal while
a notebook still runs must not lose that notebook's guest mid-lesson; the
live notebook releases its own guests when its cells finish or its kernel
stops.  ``force`` also removes what live processes own (a hung kernel) and
things whose names carry no pid (hand-written domain XML).

``all_users`` (root only) does the same for every user: the system daemon's
lab domains, every user's QEMU processes and run dirs, and the domains in
each user's session daemon that is running (a stopped session daemon runs
no guest; its definitions wait for that user's own cleanup).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

import psutil

from labkit import libvirtd, runtime
from labkit.errors import AccessDeniedError, LabkitError
from labkit.qemu import qemu_name
from labkit.runtime import owner_alive

if TYPE_CHECKING:
    from labkit import virt

Kind = Literal["domain", "qemu", "dir", "log", "kernelfile", "squatted", "pool"]
Action = Literal["removed", "would remove", "kept", "failed"]
KINDS: tuple[Kind, ...] = ("domain", "qemu", "dir", "log", "kernelfile", "squatted", "pool")



@dataclass(frozen=True)
class Leftover:
    """One thing labkit made, what cleanup did with it, and why."""

    kind: Kind
    name: str  # the domain or QEMU name, or the path
    user: str  # whose lab it belongs to
    owner_pid: int | None  # the labkit process that made it (from its name); None: the name carries none
    owner_alive: bool
    where: str  # the libvirt URI, "pid N", or the directory
    action: Action
    detail: str  # why, and what was done


@dataclass(frozen=True)
class CleanupReport:
    """Everything cleanup looked at and what it did, in the order it did it."""

    items: tuple[Leftover, ...]
    users: tuple[str, ...]  # ("*",) with all_users
    dry_run: bool
    force: bool
    notes: tuple[str, ...] = ()  # what could not be looked at, and why

    def of(self, action: Action) -> tuple[Leftover, ...]:
        return tuple(i for i in self.items if i.action == action)

    @property
    def removed(self) -> tuple[Leftover, ...]:
        """What is gone now (with ``dry_run``: what would be)."""
        return self.of("would remove" if self.dry_run else "removed")

    @property
    def kept(self) -> tuple[Leftover, ...]:
        return self.of("kept")

    @property
    def failed(self) -> tuple[Leftover, ...]:
        return self.of("failed")

    def to_dict(self) -> dict:
        return {"users": list(self.users), "dry_run": self.dry_run, "force": self.force,
                "removed": len(self.removed), "kept": len(self.kept), "failed": len(self.failed),
                "notes": list(self.notes), "items": [asdict(i) for i in self.items]}


@dataclass(frozen=True)
class Found:
    """A thing carrying the lab's name, before cleanup decides about it."""

    kind: Kind
    name: str
    user: str
    uid: int | None  # the owner process must run as this user
    owner_pid: int | None
    since: float | None  # when it appeared (for the pid-reuse check), if known
    where: str
    remove: Callable[[], str]  # does it; says what it did
    orphan: bool = False  # known to be an orphan without an owner pid (a dead kernel's connection file)


def settle(found: Found, force: bool, dry_run: bool) -> Leftover:
    """Keep or remove one thing (see the module doc), and say why."""
    pid = found.owner_pid
    alive = pid is not None and owner_alive(pid, found.uid, found.since)

    def row(action: Action, detail: str) -> Leftover:
        return Leftover(found.kind, found.name, found.user, pid, alive, found.where, action, detail)

    if found.kind == "squatted":
        reason = found.where
    elif found.orphan:
        reason = "its Jupyter kernel is gone (no process names it)"
    elif pid is None:
        reason = "its name carries no owner pid (made by hand, or by an older labkit)"
    elif alive:
        reason = f"its process {pid} still runs and releases it itself"
    else:
        reason = f"its process {pid} is gone"
    if alive or (pid is None and not found.orphan):
        if not force:
            return row("kept", f"{reason}; --force removes it")
        reason += "; --force"
    if dry_run:
        return row("would remove", reason)
    try:
        return row("removed", f"{reason}; {found.remove()}")
    except (LabkitError, OSError, psutil.Error) as exc:
        return row("failed", f"{reason}; {exc}")


# --------------------------------------------------------------------------- users


def _uids() -> dict[str, int]:
    """Every local user's lab name → uid."""
    return {runtime.user_name(p.pw_uid): p.pw_uid for p in pwd.getpwall()}


def _user_of(name: str, users: dict[str, int]) -> tuple[str, int | None]:
    """Whose lab a name belongs to: the longest user whose prefix it carries (``?`` when none)."""
    matches = [u for u in users if name.startswith(runtime.prefix(u))]
    if not matches:
        return "?", None
    user = max(matches, key=len)
    return user, users[user]


# --------------------------------------------------------------------------- libvirt: domains and their logs


@dataclass(frozen=True)
class _Target:
    """One libvirt daemon to look in, whose domains there count, and where it logs."""

    uri: str | None  # None: this user's own connection (virt.connect() chooses)
    prefix: str  # runtime.prefix(user), or "labkit-" for every user on the system daemon
    user: str | None  # None: tell by the name
    qemu_logs: Path | None
    connect: bool  # False: no daemon runs and no lab definition waits on disk: nothing to ask


def _virt() -> ModuleType | None:
    """:mod:`labkit.virt`, or None where libvirt-python is missing (then no daemon can be asked about domains).

    Imported here, not at the top: QEMU processes, scratch dirs and kernel
    files are cleaned up without libvirt-python too.
    """
    try:
        from labkit import virt
    except ImportError:
        return None
    return virt


def _targets(virt: ModuleType, all_users: bool) -> list[_Target]:
    choice = virt.choose_uri()
    mine = "labkit-" if all_users else runtime.prefix()
    me = None if all_users else runtime.user_name()
    if choice.uri == virt.SYSTEM_URI:
        ask = libvirtd.probe() is None or any(libvirtd.SYSTEM_DEFINITIONS.glob(f"{mine}*.xml"))
        own = _Target(None, mine, me, libvirtd.SYSTEM_QEMU_LOGS, ask)
    elif choice.uri == virt.SESSION_URI:  # connecting would autostart a daemon: only when there is a reason
        ask = bool(libvirtd.session_daemons(os.getuid())) or any(libvirtd.session_definitions().glob(f"{mine}*.xml"))
        own = _Target(None, mine, me, libvirtd.session_qemu_logs(), ask)
    else:  # LABKIT_VIRT_URI names another connection (maybe remote: its logs are not here)
        own = _Target(None, mine, me, None, True)
    targets = [own]
    if all_users:
        targets += [_Target(d.uri, runtime.prefix(d.user), d.user, d.qemu_logs, True)
                     for d in libvirtd.session_daemons() if d.uid != os.geteuid()]
    return targets


def _open(virt: ModuleType, target: _Target) -> virt.Connection | None:
    if not target.connect:
        return None
    if target.uri is None:
        return virt.connect()
    try:
        return virt.connect(target.uri)
    except virt.VirtError:  # another user's daemon that exited meanwhile: it runs no guest now
        return None


def _libvirt(virt: ModuleType, target: _Target, users: dict[str, int], force: bool, dry_run: bool,
             kinds: Iterable[Kind]) -> tuple[list[Leftover], set[str]]:
    """Settle the lab domains on one daemon, then the logs of gone domains; also return every name seen."""
    conn = _open(virt, target)
    rows: list[Leftover] = []
    seen: set[str] = set()
    try:
        remaining: set[str] = set()
        if conn is not None:
            seen = set(conn.domains(target.prefix))
            remaining = set(seen)
            where = conn.choice.uri if target.uri is None else f"qemu:///session of {target.user}"
            for name in sorted(seen) if "domain" in kinds else ():
                user, uid = (target.user, users.get(target.user)) if target.user else _user_of(name, users)
                row = settle(Found("domain", name, user, uid, runtime.name_owner(name), _started(virt, name),
                                     where, _domain_remover(conn, name, target.prefix)), force, dry_run)
                rows.append(row)
                if row.action in ("removed", "would remove"):
                    remaining.discard(name)
            if "pool" in kinds:
                rows += [settle(found, force, dry_run) for found in _pools(conn, target, users, where)]
        if "log" in kinds and target.qemu_logs is not None:
            rows += [settle(found, force, dry_run) for found in _logs(target, users, remaining)]
    finally:
        if conn is not None:
            conn.close()
    return rows, seen


def _pools(conn: virt.Connection, target: _Target, users: dict[str, int], where: str) -> Iterator[Found]:
    """The lab's storage pools on one daemon (labkit.virt.storage), each removed with its volumes."""
    from labkit.virt import storage

    for name in storage.pool_names(conn, target.prefix):
        user, uid = (target.user, users.get(target.user)) if target.user else _user_of(name, users)
        yield Found("pool", name, user, uid, runtime.name_owner(name), None, where, _pool_remover(conn, name))


def _pool_remover(conn: virt.Connection, name: str) -> Callable[[], str]:
    def remove() -> str:
        from labkit.virt import storage

        return f"volumes deleted, pool destroyed (virsh pool-destroy {name})" if storage.remove_pool(conn, name) \
            else "already gone"
    return remove


def _started(virt: ModuleType, domain: str) -> float | None:
    """When the domain's QEMU started (its age, for the pid-reuse check); None when it runs none."""
    times = []
    for pid in virt.qemu_pids(domain):
        with contextlib.suppress(psutil.Error):
            times.append(psutil.Process(pid).create_time())
    return min(times, default=None)


def _domain_remover(conn: virt.Connection, name: str, prefix: str) -> Callable[[], str]:
    def remove() -> str:
        if not conn.cleanup([name], prefix):
            return "already gone"
        return f"destroyed and undefined (virsh destroy {name}; virsh undefine {name})"
    return remove


def _logs(target: _Target, users: dict[str, int], defined: set[str]) -> Iterator[Found]:
    assert target.qemu_logs is not None
    try:
        logs = sorted(target.qemu_logs.glob(f"{target.prefix}*.log"))
    except OSError:  # not ours to read (another user's daemon, as a normal user)
        return
    for log in logs:
        name = log.name.removesuffix(".log")
        if name in defined:
            continue  # its domain still exists: the log is part of it
        user, uid = (target.user, users.get(target.user)) if target.user else _user_of(name, users)
        try:
            changed = log.lstat().st_ctime
        except OSError:
            continue
        yield Found("log", str(log), user, uid, runtime.name_owner(name), changed, str(log.parent),
                     _unlinker(log))


def _unlinker(path: Path) -> Callable[[], str]:
    def remove() -> str:
        path.unlink()
        return "deleted"
    return remove


# --------------------------------------------------------------------------- QEMU processes


def _qemus(all_users: bool, managed: set[str]) -> Iterator[Found]:
    """QEMU processes carrying the lab name of the user they run as (not those of domains seen above)."""
    me = os.geteuid()
    for proc in psutil.process_iter(["cmdline", "uids", "create_time"]):
        label, uids = qemu_name(proc.info["cmdline"] or []), proc.info["uids"]
        if label is None or uids is None or (not all_users and uids.effective != me):
            continue
        name = label.removeprefix("guest=")  # libvirt's QEMU: -name guest=NAME,debug-threads=on
        user = runtime.user_name(uids.effective)
        if not name.startswith(runtime.prefix(user)) or name in managed:
            continue
        owner = runtime.name_owner(name, serial=not label.startswith("guest="))  # a domain's QEMU: -<pid>
        yield Found("qemu", name, user, uids.effective, owner, proc.info["create_time"], f"pid {proc.pid}",
                     _stopper(proc))


def _stopper(proc: psutil.Process) -> Callable[[], str]:
    def stop() -> str:
        proc.terminate()  # QEMU exits cleanly on SIGTERM ("terminating on signal 15")
        if _ended(proc, 3.0):
            return f"stopped pid {proc.pid} (SIGTERM)"
        proc.kill()
        if _ended(proc, 3.0):
            return f"killed pid {proc.pid} (SIGKILL)"
        raise OSError(f"pid {proc.pid} survived SIGKILL for 3 s")
    return stop


def _ended(proc: psutil.Process, timeout: float) -> bool:
    """Whether ``proc`` exited within ``timeout`` s (a zombie has: only its parent's wait() is missing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- scratch dirs


def _scratch(all_users: bool) -> Iterator[Found]:
    for run_dir, user, uid in runtime.run_dirs(all_users):
        for entry in runtime.run_dir_entries(run_dir):
            yield Found("dir", str(entry.path), user, uid, entry.pid, entry.ctime, str(run_dir), _remover(entry.path))


def _kernel_files(all_users: bool, users: dict[str, int]) -> Iterator[Found]:
    """Connection files of dead Jupyter kernels (found already dead: their owner is the gone kernel)."""
    for user, uid in (users.items() if all_users else [(runtime.user_name(), os.geteuid())]):
        for path in runtime.orphan_kernel_files(uid):
            yield Found("kernelfile", str(path), user, uid, None, None, str(path.parent), _unlinker(path),
                         orphan=True)


def _squatted(users: dict[str, int]) -> Iterator[Found]:
    """``/tmp/labkit-<user>`` that some other user made (or a symlink): that user's labkit cannot use it."""
    for user in users:
        path = Path(tempfile.gettempdir()) / runtime.prefix(user).rstrip("-")
        why = runtime.squatted(path, user)
        if why is not None:
            yield Found("squatted", str(path), user, users[user], None, None, f"{why}; {user}'s labkit uses a "
                         "private fallback dir instead", _squat_remover(path))


def _squat_remover(path: Path) -> Callable[[], str]:
    def remove() -> str:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)
        return "deleted: its user gets it back next time"
    return remove


def _remover(path: Path) -> Callable[[], str]:
    def remove() -> str:
        shutil.rmtree(path)
        return "deleted"
    return remove


# --------------------------------------------------------------------------- the whole sweep


def cleanup(*, all_users: bool = False, force: bool = False, dry_run: bool = False,
            kinds: Iterable[Kind] = KINDS) -> CleanupReport:
    """Find the lab's leftovers and remove the orphans (``force``: all of them); report every one.

    Order matters: domains go through libvirt first (which stops their QEMU),
    then QEMU processes no domain accounts for, then scratch dirs (nothing
    writes to them any more), with libvirt's logs of gone domains last.
    """
    if all_users and os.geteuid() != 0:
        raise AccessDeniedError("only root can clean up other users' guests, processes and files",
                                "drop --all-users to clean up your own, or run: sudo .venv/bin/labkit cleanup "
                                "--all-users")
    kinds = tuple(kinds)
    users = _uids()
    rows: list[Leftover] = []
    managed: set[str] = set()
    notes: list[str] = []
    if "domain" in kinds or "log" in kinds or "pool" in kinds:
        virt = _virt()
        if virt is None:
            notes.append("libvirt domains and their logs were not looked at: libvirt-python is not installed "
                         "(./kvmlab setup installs it)")
        else:
            for target in _targets(virt, all_users):
                found, seen = _libvirt(virt, target, users, force, dry_run, kinds)
                rows += found
                managed |= seen
    if "qemu" in kinds:
        rows += [settle(f, force, dry_run) for f in _qemus(all_users, managed)]
    if "dir" in kinds:
        rows += [settle(f, force, dry_run) for f in _scratch(all_users)]
    if "kernelfile" in kinds:
        rows += [settle(f, force, dry_run) for f in _kernel_files(all_users, users)]
    if "squatted" in kinds and all_users:
        rows += [settle(f, force, dry_run) for f in _squatted(users)]
    return CleanupReport(tuple(rows), ("*",) if all_users else (runtime.user_name(),), dry_run, force,
                         tuple(notes))
