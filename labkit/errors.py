"""One error hierarchy for the whole lab.

Every error labkit raises says *what* is wrong and *how to fix it*, because
the reader is usually a student in a notebook, not the author of the code.
The CLI turns any :class:`LabkitError` into one clear line and exit status 2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class LabkitError(Exception):
    """Base class: a problem with a sentence for the learner and a fix."""

    def __init__(self, what: str, fix: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.what} (fix: {self.fix})" if self.fix else self.what


class InvalidOptionError(LabkitError, ValueError):
    """A parameter is out of range or malformed (size, name, path, XML...)."""


class MissingToolError(LabkitError, FileNotFoundError):
    """A program or file the lab needs is not installed or not found."""


class AccessDeniedError(LabkitError, PermissionError):
    """The current user may not use a resource (e.g. ``/dev/kvm``)."""


class KvmUnavailableError(LabkitError):
    """``/dev/kvm`` is missing or unusable on this host."""


class DiskFullError(LabkitError, OSError):
    """A write failed for want of space (ENOSPC/EDQUOT): the disk or the user's quota is full."""


class ReadOnlyError(AccessDeniedError):
    """A directory labkit must write to is read-only or not writable by this user."""


# --------------------------------------------------------------------------- a guest's failures, QEMU or libvirt alike


class MissingKernelError(MissingToolError):
    """The guest kernel or initramfs file is not there."""


class GuestError(LabkitError):
    """A guest did not get where it should; carries the tail of its console."""


class GuestTimeoutError(GuestError, TimeoutError):
    """The guest did not print what was awaited in time (labkit then stopped it)."""


class GuestStoppedError(GuestError):
    """The guest stopped before it printed what was awaited (QEMU exited, the domain shut off)."""


class GuestPanicError(GuestStoppedError):
    """The guest's kernel panicked (its console says ``Kernel panic - not syncing``)."""


def console_tail(text: str, lines: int = 15) -> str:
    """The last ``lines`` lines a guest printed on its console, for an error message."""
    return "\n".join(text.replace("\r", "").strip().splitlines()[-lines:]) or "(the console is empty)"


def _no_run_dir_known(path: str) -> tuple[Path, str] | None:
    return None


#: The run dir of this user that holds ``path``, with how to make room in it: (run dir, fix), or None.
#: :mod:`labkit.runtime` installs it when imported: it knows the run dirs, and this module, below it, cannot ask.
full_run_dir_advice: Callable[[str], tuple[Path, str] | None] = _no_run_dir_known


def from_os_error(exc: OSError, doing: str | None = None) -> LabkitError:
    """An ``OSError`` that reached the top as the one error a learner can act on.

    ``doing`` says what labkit was writing or reading ("build the initramfs in
    ~/.cache/labkit"); the file name comes from the exception when it has one.
    A full disk is a full disk (never "check the network"), a read-only or
    foreign directory says which and how to point labkit elsewhere.
    """
    import errno
    where = f" ({exc.filename})" if exc.filename else ""
    action = f"cannot {doing}" if doing else "a file operation failed"
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        held = full_run_dir_advice(exc.filename) if isinstance(exc.filename, str) else None
        if held is not None:
            run_dir, fix = held
            return DiskFullError(f"{action}: no space left in labkit's run dir {run_dir}{where}", fix)
        return DiskFullError(f"{action}: no space left on the device{where}",
                             f"free space there (df -h {exc.filename or '.'}); `labkit cleanup --cache` drops "
                             "cached guest images, XDG_CACHE_HOME=/other/dir moves the cache")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        kind = "read-only" if exc.errno == errno.EROFS else "not writable by you"
        return ReadOnlyError(f"{action}: {reason}{where}: that place is {kind}",
                             "point labkit at a directory you can write: XDG_CACHE_HOME=/writable/dir for the "
                             "image cache (or LABKIT_SHARED_CACHE for an instructor's read-only one)")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return MissingToolError(f"{action}: {reason}{where}", "check the path: its directory must exist")
    if exc.errno == errno.EISDIR:
        return InvalidOptionError(f"{action}: {reason}{where}", "give a file, not a directory")
    return LabkitError(f"{action}: {reason}{where}", "check the path and its permissions")
