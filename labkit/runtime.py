"""Where labkit keeps its things on a host, and what it calls them.

Many students can share one workshop host, so everything labkit creates
(guests, sockets, logs, libvirt domains, temp dirs) carries the prefix
``labkit-<user>-`` and lives in per-user directories; the names also carry
the pid of the process that made them.  ``labkit cleanup``
(:mod:`labkit.cleanup`) relies on these names to find what the lab left
behind, and nothing else, and on the pid to tell a leftover from a live
notebook's guest.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pwd
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from labkit import errors
from labkit.errors import InvalidOptionError, MissingToolError, from_os_error

_SAFE = re.compile(r"[^a-z0-9_.-]")


def user_name(uid: int | None = None) -> str:
    """The login name of ``uid`` (default: the effective user), made safe for file and domain names.

    Taken from the passwd entry of the uid, never from ``$USER``/``$LOGNAME``:
    those survive ``setpriv``, ``su -m`` or a hand-set environment, and a
    student whose ``$USER`` said ``root`` would name everything after root
    (and fail on root's private run dir).  The uid is what the kernel checks,
    so the name follows it.
    """
    uid = os.geteuid() if uid is None else uid
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # no passwd entry (some containers)
        name = f"uid{uid}"
    return _SAFE.sub("_", name.lower()) or f"uid{uid}"


def require_program(name: str, package: str) -> str:
    """Path of program ``name`` on PATH, or a :class:`MissingToolError` naming the apt ``package``."""
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(f"{name} is not installed (or not on PATH)",
                               f"sudo apt-get install {package} (./kvmlab setup installs it)")
    return path


def prefix(user: str | None = None) -> str:
    """``labkit-<user>-``: the prefix of every name labkit gives a host resource."""
    return f"labkit-{user or user_name()}-"


#: The short name a learner gives a guest (``tiny``, ``cli``): what goes between the prefix and the pid.
_SHORT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")
#: A lab name's tail: ``-<pid>`` (a libvirt domain), ``-<pid>-<serial>`` (a QEMU machine: several per process).
_OWNER_TAIL = re.compile(r"-(?P<pid>\d+)$")
_OWNER_SERIAL_TAIL = re.compile(r"-(?P<pid>\d+)-(?P<serial>\d+)$")


def lab_name(name: str, what: str, *, serial: int | None = None) -> str:
    """``labkit-<user>-<name>-<pid>`` (``-<serial>`` added when given): the one way labkit names a guest.

    The user keeps students apart, the pid tells ``labkit cleanup`` whether
    the owner still runs (:func:`name_owner` reads it back); ``serial``
    tells apart several guests of one process.  ``what`` names the thing in
    the error a bad ``name`` gets (``"domain"``, ``"machine"``).
    """
    if not isinstance(name, str) or not _SHORT_NAME.fullmatch(name):
        raise InvalidOptionError(f"{what} name {name!r} must be 1-40 characters of a-z, 0-9, '_', '.', '-' "
                                 "(starting with a letter or digit)", "pass a short lowercase name such as 'tiny'")
    return f"{prefix()}{name}-{os.getpid()}" + (f"-{serial}" if serial is not None else "")


def name_owner(name: str, *, serial: bool = False) -> int | None:
    """The pid of the labkit process a lab name says made it (None: the name carries none).

    ``serial``: the name has the ``-<pid>-<serial>`` tail of a QEMU machine, not a domain's ``-<pid>``.
    """
    match = (_OWNER_SERIAL_TAIL if serial else _OWNER_TAIL).search(name)
    return int(match["pid"]) if match else None


def cache_dir(create: bool = True) -> Path:
    """Per-user cache (guest kernels, initramfs): ``$XDG_CACHE_HOME/labkit``, private (0700) to its user.

    ``create=False`` only says where it is: reading a cache (``labkit image
    info``) must work where it cannot be written.
    """
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    path = Path(base) / "labkit"
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise from_os_error(exc, "create the lab's cache directory") from None
    return path


def run_dir_of(user: str | None = None) -> Path:
    """Where :func:`run_dir` looks first for ``user`` (default: this user), without creating it.

    This user's is ``$XDG_RUNTIME_DIR/labkit`` when that is a private
    directory of ours (a login's ``/run/user/<uid>``: no other user can even
    name things there); otherwise, and for other users, ``/tmp/labkit-<user>``.
    """
    if user in (None, user_name()):
        xdg = _xdg_runtime_dir()
        if xdg is not None:
            return xdg / "labkit"
    return Path(tempfile.gettempdir()) / prefix(user).rstrip("-")


def _xdg_runtime_dir() -> Path | None:
    """``$XDG_RUNTIME_DIR`` if it is set and a directory private to this user (else None)."""
    value = os.environ.get("XDG_RUNTIME_DIR")
    if not value or not os.path.isabs(value):
        return None
    return Path(value) if _not_private(Path(value)) is None else None


def _not_private(path: Path) -> str | None:
    """Why ``path`` is not a directory private to this user (None when it is). A symlink never is."""
    try:
        st = path.lstat()
    except OSError as exc:
        return f"cannot be used ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return f"is a symlink (to {os.readlink(path)})"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.geteuid():
        return f"is owned by {user_name(st.st_uid)}"
    if st.st_mode & 0o077:
        return f"is open to others (mode {stat.filemode(st.st_mode)})"
    return None


#: The file (in the user's private cache dir) naming the fallback run dir of a user whose usual one is taken.
_FALLBACK_NOTE = "run-dir"


def run_dir() -> Path:
    """Per-user directory for sockets, consoles and scratch dirs of live guests, private (0700) to its owner.

    The first choice is :func:`run_dir_of`.  ``/tmp`` is shared by every
    user, so someone may have made ``/tmp/labkit-<you>`` first (by mistake,
    or to read or block your consoles), or made it a symlink.  That
    directory is never used; labkit falls back to a fresh private directory
    ``/tmp/labkit-<you>-XXXXXXXX`` (remembered in the private cache dir, so
    every labkit process of yours finds the same one), and
    ``labkit cleanup --all-users`` reports the squatted name to root.
    """
    path = run_dir_of()
    with contextlib.suppress(OSError):
        path.mkdir(mode=0o700)
    if _not_private(path) is None:
        return _remembered(path)
    note = cache_dir(create=False) / _FALLBACK_NOTE
    with contextlib.suppress(OSError, ValueError):
        remembered = Path(note.read_text().strip())
        if is_fallback_run_dir(remembered.name, user_name()) and _not_private(remembered) is None:
            return _remembered(remembered)
    fallback = Path(tempfile.mkdtemp(prefix=prefix()))
    with contextlib.suppress(OSError):  # a read-only cache dir: this process alone uses the fallback
        cache_dir().joinpath(_FALLBACK_NOTE).write_text(f"{fallback}\n")
    return _remembered(fallback)


#: The file (in the private cache dir) listing the run dirs this user's labkit used outside the usual places.
_RUN_DIRS_NOTE = "run-dirs"
#: Where ``labkit cleanup --all-users`` looks for every user's run dirs without being told.
USUAL_TMP, USUAL_RUNTIME = Path("/tmp"), Path("/run/user")


def _usual(path: Path, user: str, uid: int) -> bool:
    """Whether ``path`` is where cleanup looks anyway: ``/tmp/labkit-<user>[-XXXXXXXX]``, ``/run/user/<uid>/labkit``."""
    return path == USUAL_RUNTIME / str(uid) / "labkit" or (
        path.parent == USUAL_TMP and (path.name == prefix(user).rstrip("-") or is_fallback_run_dir(path.name, user)))


def _remembered(path: Path) -> Path:
    """``path``, noted in the user's cache dir when it is not in a usual place (a custom XDG_RUNTIME_DIR or
    TMPDIR), so that a later ``labkit cleanup`` in another environment, or root's, still finds it."""
    if _usual(path, user_name(), os.geteuid()):
        return path
    note = cache_dir(create=False) / _RUN_DIRS_NOTE
    with contextlib.suppress(OSError):
        known = note.read_text().split("\n") if note.exists() else []
        if str(path) not in known:
            kept = [line for line in known if line and os.path.isdir(line)]  # forget the ones gone since
            cache_dir().joinpath(_RUN_DIRS_NOTE).write_text("".join(f"{line}\n" for line in [*kept, str(path)]))
    return path


def remembered_run_dirs(cache: Path, user: str, uid: int) -> list[Path]:
    """The run dirs noted in the cache dir ``cache`` that are still ``user``'s: private directories of ``uid``
    named as labkit names run dirs.  A note is only a hint: anything else in it is ignored."""
    try:
        lines = (cache / _RUN_DIRS_NOTE).read_text().splitlines()
    except (OSError, ValueError):
        return []
    found = []
    for line in lines:
        path = Path(line)
        if not path.is_absolute() or not (path.name in ("labkit", prefix(user).rstrip("-"))
                                          or is_fallback_run_dir(path.name, user)):
            continue
        try:
            st = path.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077:
            found.append(path)
    return found


def is_fallback_run_dir(name: str, user: str) -> bool:
    """Whether ``name`` is a fallback run dir :func:`run_dir` makes (``labkit-<user>-`` + mkdtemp's 8 characters)."""
    return re.fullmatch(re.escape(prefix(user)) + r"[a-z0-9_]{8}", name) is not None


def squatted(path: Path, user: str) -> str | None:
    """Why ``path`` (``/tmp/labkit-<user>``) cannot be ``user``'s run dir (someone else's, a symlink); None if fine."""
    try:
        st = path.lstat()
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return f"a symlink to {os.readlink(path)}, made by {user_name(st.st_uid)}"
    if user_name(st.st_uid) != user:
        return f"owned by {user_name(st.st_uid)}, not {user} (mode {stat.filemode(st.st_mode)})"
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if st.st_mode & 0o077:
        return f"open to other users (mode {stat.filemode(st.st_mode)})"
    return None


#: psutil's start times are in jiffies (10 ms), file times in ns: a little slack for the comparison.
_CLOCK_SLACK_S = 1.0


def run_dirs(all_users: bool) -> list[tuple[Path, str, int]]:
    """(path, user, uid) of the run dirs to look in: this user's, or every user's (by owner and name).

    This user's: the one in use now, those noted as used elsewhere (another
    ``XDG_RUNTIME_DIR`` or ``TMPDIR``, :func:`remembered_run_dirs`) and the
    usual ones.  Every user's: ``/tmp/labkit-<user>`` and fallbacks
    ``/tmp/labkit-<user>-XXXXXXXX`` owned by that user, ``/run/user/<uid>/labkit``,
    and the run dirs noted in each user's cache dir (``~/.cache/labkit``; root's
    own as set now).
    """
    me, uid = user_name(), os.geteuid()
    if not all_users:
        own = dict.fromkeys([run_dir(), *remembered_run_dirs(cache_dir(create=False), me, uid),
                              *(p for p in (USUAL_TMP / prefix(me).rstrip("-"), USUAL_RUNTIME / str(uid) / "labkit")
                                if p.is_dir() and _not_private(p) is None)])
        return [(path, me, uid) for path in own]
    candidates = [*Path(tempfile.gettempdir()).glob("labkit-*"), *USUAL_TMP.glob("labkit-*"),
                  *USUAL_RUNTIME.glob("*/labkit")]
    noted = {path: (user_name(entry.pw_uid), entry.pw_uid) for entry in pwd.getpwall()
             for path in remembered_run_dirs(Path(entry.pw_dir) / ".cache" / "labkit", user_name(entry.pw_uid),
                                             entry.pw_uid)}
    noted.update((path, (me, uid)) for path in remembered_run_dirs(cache_dir(create=False), me, uid))
    found: list[tuple[Path, str, int]] = [(path, user, owner) for path, (user, owner) in noted.items()]
    for path in dict.fromkeys(candidates):
        try:
            st = path.lstat()
        except OSError:
            continue
        user = user_name(st.st_uid)
        mine = path.name == f"labkit-{user}" or is_fallback_run_dir(path.name, user) or (
            path.name == "labkit" and path.parent.name == str(st.st_uid))
        if stat.S_ISDIR(st.st_mode) and mine and squatted(path, user) is None and path not in noted:
            found.append((path, user, st.st_uid))
    return sorted(found)


def owner_alive(pid: int, uid: int | None = None, since: float | None = None) -> bool:
    """Whether process ``pid`` still runs — as ``uid``, and started no later than ``since``.

    ``since`` is when the thing it owns appeared: a process that started
    after that cannot have made it, so its pid was reused after the owner died.
    """
    import psutil  # here, not at the top: the raw KVM layer imports runtime and needs no psutil

    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE or not proc.cmdline():  # a kernel thread made nothing
                return False
            if uid is not None and proc.uids().effective != uid:
                return False
            return since is None or proc.create_time() <= since + _CLOCK_SLACK_S
    except psutil.Error:
        return False


#: ``<purpose>-<pid>-<random>``: the pid says which process a scratch dir belongs to (``labkit cleanup``).
SCRATCH_NAME = re.compile(r"(?P<purpose>[a-z][a-z0-9_-]*?)-(?P<pid>\d+)-[a-z0-9_]+")


def scratch_dir(purpose: str) -> Path:
    """A fresh private directory under :func:`run_dir`, named after its process; the caller removes it.

    The first one a process makes also reclaims the scratch dirs of this
    user's dead labkit processes (a ``labkit boot`` killed with -9 could not
    remove its own).
    """
    base = run_dir()
    global _reclaimed
    if not _reclaimed:
        _reclaimed = True
        for orphan in orphan_scratch_dirs(base):
            shutil.rmtree(orphan, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{purpose}-{os.getpid()}-", dir=base))


_reclaimed = False


@dataclass(frozen=True)
class RunDirEntry:
    """A directory in a run dir: a scratch dir ``<purpose>-<pid>-…`` (``pid`` read back) or one of no owner."""

    path: Path
    pid: int | None  # the process that made it; None: the name is no scratch dir's
    ctime: float  # when it appeared (for the pid-reuse check of owner_alive)


def run_dir_entries(base: Path) -> list[RunDirEntry]:
    """The directories in run dir ``base``, sorted (its files are bookkeeping, such as libvirtd.json)."""
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        try:
            st = entry.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            match = SCRATCH_NAME.fullmatch(entry.name)
            found.append(RunDirEntry(entry, int(match["pid"]) if match else None, st.st_ctime))
    return found


def orphan_scratch_dirs(base: Path, uid: int | None = None) -> list[Path]:
    """Scratch dirs in run dir ``base`` whose process is gone (checked as ``uid``, default this user)."""
    uid = os.geteuid() if uid is None else uid
    return [e.path for e in run_dir_entries(base) if e.pid is not None and not owner_alive(e.pid, uid, e.ctime)]


#: Jupyter kernels named in a connection file younger than this may still be starting.
_KERNEL_FILE_GRACE_S = 30.0


def orphan_kernel_files(uid: int | None = None) -> list[Path]:
    """Jupyter connection files ``/tmp/tmp*.json`` of this user (or ``uid``) whose kernel is gone.

    papermill (``labkit run``) has jupyter_client write one per notebook
    and delete it when the kernel ends; a run killed with -9 leaves it.  A
    file counts only if it is a kernel connection file (its keys say so),
    older than a moment, and no process names it on its command line (the
    kernel runs as ``… -f /tmp/tmpXXXX.json``).
    """
    uid = os.geteuid() if uid is None else uid
    old = time.time() - _KERNEL_FILE_GRACE_S
    candidates = []
    for path in Path(tempfile.gettempdir()).glob("tmp*.json"):
        try:
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode) or st.st_uid != uid or st.st_size > 8192 or st.st_mtime > old:
                continue
            keys = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(keys, dict) and {"shell_port", "iopub_port", "key", "transport"} <= keys.keys():
            candidates.append(path)
    if not candidates:
        return []
    import psutil

    named: set[str] = set()
    for proc in psutil.process_iter(["cmdline"]):
        named.update(proc.info["cmdline"] or ())
    return [p for p in candidates if str(p) not in named]


@contextlib.contextmanager
def scratch(purpose: str) -> Iterator[Path]:
    """:func:`scratch_dir` as a context manager: removed on the way out, whatever happens."""
    path = scratch_dir(purpose)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_lock = threading.Lock()
_at_exit: dict[int, Callable[[], object]] = {}


def release_at_exit(release: Callable[[], object]) -> int:
    """Run ``release`` at interpreter exit unless :func:`forget` is called first.

    Context managers release their resource on the normal path; this catches
    the paths they cannot see: a notebook kernel shut down with a guest still
    running, or a script that never reached ``__exit__``.
    """
    with _lock:
        token = id(release)
        _at_exit[token] = release
        return token


def forget(token: int) -> None:
    """The resource was released normally: drop its exit hook."""
    with _lock:
        _at_exit.pop(token, None)


def release_pending(token: int) -> bool:
    """Whether the exit hook ``token`` still waits: its resource was not released (nor forgotten) yet."""
    with _lock:
        return token in _at_exit


@atexit.register
def _release_all() -> None:
    with _lock:
        pending = list(_at_exit.values())
        _at_exit.clear()
    for release in reversed(pending):
        try:
            release()
        except Exception:  # noqa: BLE001 - best effort at exit, keep going
            pass


# --------------------------------------------------------------------------- a full run dir, explained


def _run_dir_holding(path: str) -> Path | None:
    """This user's run dir (:func:`labkit.runtime.run_dir_of`, or a fallback of it) that holds ``path``, if one does.

    The run dir holds live guests' consoles and initramfs copies, not the
    image cache: a full one needs its own advice.
    """
    first, user = run_dir_of(), user_name()
    for folder in Path(path).parents:
        if folder == first or (folder.parent == first.parent and is_fallback_run_dir(folder.name, user)):
            return folder
    return None


def _run_dir_fix(run_dir: Path) -> str:
    """How to make room in a full run dir, or point labkit at another: which variable chose this one."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    moved = (f"XDG_RUNTIME_DIR={xdg} chose it: unset it (labkit then uses {tempfile.gettempdir()}) or point it at "
             "a roomier private directory (mode 0700)" if xdg and run_dir.parent == Path(xdg) else
             f"TMPDIR chose {run_dir.parent}: point TMPDIR at a roomier directory")
    return (f"free space there (df -h {run_dir}; `labkit cleanup` removes what dead lab runs left in it), or "
            f"{moved}")


def _full_run_dir_advice(path: str) -> tuple[Path, str] | None:
    run_dir = _run_dir_holding(path)
    return None if run_dir is None else (run_dir, _run_dir_fix(run_dir))


errors.full_run_dir_advice = _full_run_dir_advice  # errors.from_os_error asks it (errors sits below this module)
