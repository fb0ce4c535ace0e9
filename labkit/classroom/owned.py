"""Read a student's file only if it is theirs: no link followed, owner checked on the open file.

The instructor (root on a hub host) reads files under every student's home.
A student can write only under their own home, so a file counts only if the
student owns it, it is a regular file, and no path component the student
controls was a symlink to someone else's file (``O_NOFOLLOW`` on the file,
and on the folder for a folder's files).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class NotTheirs(Exception):
    """The file is not the student's own (a link, another owner, not a regular file): ignore it."""


def read_text(path: Path, uid: int, dir_fd: int | None = None) -> str | None:
    """The text of ``path`` if ``uid`` owns it as a regular file; None if it does not exist.

    Raises :class:`NotTheirs` for a file that is not theirs and ``OSError``
    for one that cannot be read (a symlink: ``ELOOP``).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, encoding="utf-8", errors="replace") as fh:
        info = os.fstat(fh.fileno())
        if info.st_uid != uid or not stat.S_ISREG(info.st_mode):
            raise NotTheirs("not their own file")
        return fh.read()


def files_in(folder: Path, uid: int, suffix: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, text) of each ``*suffix`` file in ``folder`` that ``uid`` owns, and why others were left out.

    No folder: nothing.  A folder that is not theirs raises :class:`NotTheirs`.
    """
    try:
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):  # a link or a file where the folder should be
            raise NotTheirs(f"{folder} is not their own folder") from None
        raise
    try:
        if os.fstat(dfd).st_uid != uid:
            raise NotTheirs(f"{folder} is not their own folder")
        found, skipped = [], []
        for name in sorted(os.listdir(dfd)):
            if not name.endswith(suffix):
                continue
            try:
                text = read_text(Path(name), uid, dir_fd=dfd)
            except NotTheirs as exc:
                skipped.append(f"{folder / name}: {exc}")
                continue
            except OSError as exc:
                skipped.append(f"cannot read {folder / name}: {exc.strerror}")
                continue
            if text is not None:
                found.append((name, text))
        return found, skipped
    finally:
        os.close(dfd)
