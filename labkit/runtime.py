"""Where labkit keeps its things on a host, and what it calls them.

Many students can share one workshop host, so everything labkit creates
(guests, sockets, logs, libvirt domains, temp dirs) carries the prefix
``labkit-<user>-`` and lives in per-user directories.  ``labkit cleanup``
relies on these names to find what the lab left behind, and nothing else.
"""

from __future__ import annotations

import atexit
import getpass
import os
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

_SAFE = re.compile(r"[^a-z0-9_.-]")


def user_name() -> str:
    """The login name of the current user, made safe for file and domain names."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        name = f"uid{os.getuid()}"
    return _SAFE.sub("_", name.lower()) or f"uid{os.getuid()}"


def prefix(user: str | None = None) -> str:
    """``labkit-<user>-``: the prefix of every name labkit gives a host resource."""
    return f"labkit-{user or user_name()}-"


def cache_dir() -> Path:
    """Per-user cache (guest kernels, initramfs): ``$XDG_CACHE_HOME/labkit``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    path = Path(base) / "labkit"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir() -> Path:
    """Per-user directory for sockets, consoles and scratch dirs of live guests.

    Lives under the system temp dir (not ``$XDG_RUNTIME_DIR``, which many
    Jupyter and CI environments lack) and is private to its owner.
    """
    path = Path(tempfile.gettempdir()) / prefix().rstrip("-")
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def scratch_dir(purpose: str) -> Path:
    """A fresh private directory under :func:`run_dir`; the caller removes it."""
    return Path(tempfile.mkdtemp(prefix=f"{purpose}-", dir=run_dir()))


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
