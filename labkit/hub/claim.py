"""One hub per state folder and per port: a second ``labkit hub start`` refuses, naming the first one's pid.

Two hubs on one state folder would rewrite each other's plan, config and
database; two on one port would leave the second failing after it had
already created accounts.  Each hub holds an exclusive ``flock`` on one lock
file per state folder and one per port (in :data:`LOCK_DIR`, root's) for its
whole life, and writes its pid into them.  The kernel drops a lock when its
holder dies, even by SIGKILL, so a crashed hub never blocks the next one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from labkit.errors import LabkitError
from labkit.hub.plan import HubPlan

#: Where the hubs' lock files live (tmpfs: gone at reboot, like the hubs).
LOCK_DIR = Path("/run/labkit-hub")


class HubBusyError(LabkitError):
    """Another hub already uses this state folder or port (or something else holds the port)."""


def lock_names(plan: HubPlan) -> dict[str, str]:
    """Lock file name → what it guards, in words: the state folder (by its real path) and the port."""
    state = os.path.realpath(plan.state_dir)
    return {f"state-{hashlib.sha256(state.encode()).hexdigest()[:16]}.lock": f"the state folder {state}",
            f"port-{plan.port}.lock": f"port {plan.port}"}


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int(path.read_text().strip())}"
    return "a process whose pid it did not write yet"


def _lock(path: Path, what: str) -> int:
    """An fd holding the exclusive lock ``path`` (retried when the file was replaced meanwhile)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise HubBusyError(f"another labkit hub already uses {what}: {_holder(path)}",
                               "stop that hub first (Ctrl-C in its terminal, or kill -TERM PID), or give this one "
                               "its own --state and --port") from None
        try:  # the holder before us may have removed the file after we opened it: lock the one on disk
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def port_free(ip: str, port: int) -> str | None:
    """Why nothing else can listen on ``ip``:``port`` (None when it is free)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


@contextlib.contextmanager
def claim(plan: HubPlan, lock_dir: Path = LOCK_DIR) -> Iterator[None]:
    """Hold this hub's state folder and port until the ``with`` ends; refuse at once if either is taken."""
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    held: list[tuple[Path, int]] = []
    try:
        for name, what in lock_names(plan).items():
            path = lock_dir / name
            held.append((path, _lock(path, what)))
        busy = port_free(plan.ip, plan.port)
        if busy is not None:
            raise HubBusyError(f"port {plan.port} on {plan.ip or 'every address'} cannot be used: {busy}",
                               f"find what listens there (ss -ltnp 'sport = :{plan.port}'), or choose another "
                               "--port")
        yield
    finally:
        for path, fd in reversed(held):
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(fd)
