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
import os
import pwd
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from labkit.errors import AccessDeniedError, MissingToolError, from_os_error

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
    """Where :func:`run_dir` is for ``user`` (default: this user), without creating it."""
    return Path(tempfile.gettempdir()) / prefix(user).rstrip("-")


def run_dir() -> Path:
    """Per-user directory for sockets, consoles and scratch dirs of live guests.

    Lives under the system temp dir (not ``$XDG_RUNTIME_DIR``, which many
    Jupyter and CI environments lack) and is private to its owner.  The
    temp dir is shared by every user, so a directory of that name that
    someone else made first (by mistake or to read your consoles) is refused,
    not used.
    """
    path = run_dir_of()
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        owner = user_name(st.st_uid)
        raise AccessDeniedError(f"{path} should be your private lab directory, but it is "
                                f"{'not a directory' if not stat.S_ISDIR(st.st_mode) else 'a directory'} "
                                f"owned by {owner} with mode {stat.filemode(st.st_mode)}: labkit will not put "
                                "your guests' consoles and sockets there",
                                f"ask the host's administrator to remove it (sudo rm -rf {path}); labkit "
                                "then recreates it, private to you")
    return path


#: psutil's start times are in jiffies (10 ms), file times in ns: a little slack for the comparison.
_CLOCK_SLACK_S = 1.0


def owner_alive(pid: int, uid: int | None = None, since: float | None = None) -> bool:
    """Whether process ``pid`` still runs — as ``uid``, and started no later than ``since``.

    ``since`` is when the thing it owns appeared: a process that started
    after that cannot have made it, so its pid was reused after the owner died.
    """
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
    """A fresh private directory under :func:`run_dir`, named after its process; the caller removes it."""
    return Path(tempfile.mkdtemp(prefix=f"{purpose}-{os.getpid()}-", dir=run_dir()))


@contextlib.contextmanager
def scratch(purpose: str) -> Iterator[Path]:
    """:func:`scratch_dir` as a context manager: removed on the way out, whatever happens."""
    path = scratch_dir(purpose)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_lock = threading.Lock()
_at_exit: dict[int, Callable[[], None]] = {}


def release_at_exit(release: Callable[[], None]) -> int:
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
