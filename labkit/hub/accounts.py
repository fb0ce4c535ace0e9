"""Student accounts for the hub: real system users, each with a private home and their own notebooks.

The hub logs students in through PAM, so a student is an ordinary local
account with a password (``chpasswd``).  Their home is private (0700), and on
first spawn it gets a copy of the lab's notebooks in ``~/kvm-lab`` — theirs to
edit; the reference solutions are never copied.  A copy that is already
there is left alone: a student's work survives a restart of their server.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import InvalidOptionError

#: Where a student's copy of the notebooks goes, under their home.
LAB_FOLDER = "kvm-lab"
#: Accounts below this uid are the system's (Debian's and Ubuntu's FIRST_UID in /etc/adduser.conf).
FIRST_STUDENT_UID = 1000
_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: Path

    @property
    def lab(self) -> Path:
        return self.home / LAB_FOLDER


def check_name(name: str) -> str:
    """``name`` if it is a portable login name, else a clear error."""
    if not _NAME.match(name):
        raise InvalidOptionError(f"{name!r} is not a valid student login name",
                                 "use lower-case letters, digits, '-' and '_', starting with a letter")
    return name


def lookup(name: str) -> Account | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def ensure(name: str, password: str | None = None) -> Account:
    """Student ``name``: created (home 0700, bash) if missing; ``password`` set when given.

    An existing system account (uid below 1000: root, daemons) is refused:
    the hub would run a JupyterLab — a shell — as it.
    """
    check_name(name)
    existing = lookup(name)
    if existing is not None and existing.uid < FIRST_STUDENT_UID:
        raise InvalidOptionError(f"{name!r} is a system account (uid {existing.uid}), not a student",
                                 "choose another name for the student")
    if existing is None:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", name],
                       check=True, capture_output=True)
    account = lookup(name)
    assert account is not None  # it exists now
    account.home.chmod(0o700)
    if password is not None:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)
    return account


def provide_notebooks(account: Account, notebooks: Path) -> list[Path]:
    """Copy the lab's notebooks into ``~/kvm-lab`` and each edition into ``~/kvm-lab/<lang>`` (owned by the student).

    An existing copy is kept (it holds the student's work); a folder or file
    the student replaced by a symlink is skipped, so root never writes
    through a link a student planted.
    """
    from labkit.i18n.notebooks import EDITIONS

    copied = []
    for folder, lab in [(notebooks, account.lab), *((notebooks / lang, account.lab / lang) for lang in EDITIONS)]:
        if lab.is_symlink() or not folder.is_dir():
            continue
        if not lab.exists():
            lab.mkdir(mode=0o755)
            os.chown(lab, account.uid, account.gid)
        for source in sorted(folder.glob("[0-9][0-9]*_*.ipynb")):
            target = lab / source.name
            if target.exists() or target.is_symlink():
                continue
            shutil.copyfile(source, target)
            os.chown(target, account.uid, account.gid)
            copied.append(target)
    return copied


def parse_passwords(text: str) -> dict[str, str]:
    """``name:password`` lines (chpasswd's format) into a dict; blank lines and ``#`` comments are skipped."""
    passwords = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, password = line.partition(":")
        if not sep or not password:
            raise InvalidOptionError(f"line {number} of the password file is not 'name:password'",
                                     "write one 'name:password' per line")
        passwords[check_name(name.strip())] = password
    return passwords
