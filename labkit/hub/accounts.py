"""Student accounts for the hub: real system users, each with a private home and their own notebooks.

The hub logs students in through PAM, so a student is an ordinary local
account with a password (``chpasswd``).  Their home is private (0700), and on
first spawn it gets a copy of the lab's notebooks in ``~/kvm-lab`` — theirs to
edit; the reference solutions are never copied.  A copy that is already
there is left alone: a student's work survives a restart of their server.
"""

from __future__ import annotations

import errno
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import InvalidOptionError, from_os_error

#: Where a student's copy of the notebooks goes, under their home.
LAB_FOLDER = "kvm-lab"
#: Where the system says which uids are people's (``UID_MIN``/``UID_MAX``) and which are daemons' (``SYS_UID_*``).
LOGIN_DEFS = Path("/etc/login.defs")
#: shadow-utils' defaults when login.defs does not say.
_UID_DEFAULTS = {"UID_MIN": 1000, "UID_MAX": 60000, "SYS_UID_MIN": 101, "SYS_UID_MAX": 999}
#: ``nobody``: the overflow uid (and its 16-bit twin), never a person.
OVERFLOW_UIDS = (65534, 65535)
#: Shells that mean "this account does not log in".
NO_LOGIN_SHELLS = ("nologin", "false")
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


def uid_ranges(login_defs: Path = LOGIN_DEFS) -> dict[str, int]:
    """``UID_MIN``, ``UID_MAX``, ``SYS_UID_MIN``, ``SYS_UID_MAX`` from ``login_defs`` (defaults where unset)."""
    found = dict(_UID_DEFAULTS)
    try:
        text = login_defs.read_text(errors="replace")
    except OSError:
        return found
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in found and words[1].isdigit():
            found[words[0]] = int(words[1])
    return found


def not_a_person(entry: pwd.struct_passwd, login_defs: Path = LOGIN_DEFS) -> str | None:
    """Why the passwd ``entry`` is a system account, not a student's (None when it may be a student).

    Every sign counts, because the hub would give the account a password and
    run a JupyterLab — a shell — as it: a uid outside login.defs' range for
    people (or inside its range for daemons), the overflow uid ``nobody``, a
    shell that refuses logins.
    """
    ranges = uid_ranges(login_defs)
    uid = entry.pw_uid
    if uid in OVERFLOW_UIDS:
        return f"uid {uid} is the overflow user (nobody)"
    if ranges["SYS_UID_MIN"] <= uid <= ranges["SYS_UID_MAX"] or not ranges["UID_MIN"] <= uid <= ranges["UID_MAX"]:
        return (f"uid {uid} is outside the range for people's accounts ({ranges['UID_MIN']}-{ranges['UID_MAX']} "
                f"in {login_defs})")
    if Path(entry.pw_shell or "/bin/sh").name in NO_LOGIN_SHELLS:
        return f"its shell {entry.pw_shell} refuses logins"
    return None


def lookup(name: str) -> Account | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def ensure(name: str, password: str | None = None) -> Account:
    """Student ``name``: created (home 0700, bash) if missing; ``password`` set when given.

    An existing system account (:func:`check_student`) is refused: the hub
    would run a JupyterLab — a shell — as it.
    """
    existing = check_student(name)
    if existing is None:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", name],
                       check=True, capture_output=True)
    account = lookup(name)
    assert account is not None  # it exists now
    account.home.chmod(0o700)
    if password is not None:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)
    return account


def check_student(name: str) -> Account | None:
    """The existing account ``name`` if it may be a student's (None: no such account yet); else a clear error."""
    check_name(name)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    why = not_a_person(entry)
    if why is not None:
        raise InvalidOptionError(f"{name!r} is a system account, not a student: {why}",
                                 "choose another name for the student")
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def provide_notebooks(account: Account, notebooks: Path) -> list[Path]:
    """Copy the lab's notebooks and glossary into ``~/kvm-lab``, each edition into ``~/kvm-lab/<lang>`` (the student's).

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
        for source in sorted([*folder.glob("[0-9][0-9]*_*.ipynb"), *folder.glob("*.md")]):  # + the glossary
            target = lab / source.name
            if target.exists() or target.is_symlink():
                continue
            shutil.copyfile(source, target)
            os.chown(target, account.uid, account.gid)
            copied.append(target)
    return copied


def read_passwords(path: Path) -> dict[str, str]:
    """The ``name:password`` lines of ``path``, if only the instructor can read it (else a clear error).

    Opened without following a symlink and without blocking (a FIFO would
    wait forever for a writer), then checked on the open file itself, so
    nothing can swap it between the check and the read: a regular file owned
    by this user (root) that neither group nor others can read.
    """
    fix = f"chown root: {path} && chmod 600 {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidOptionError(f"the password file {path} is a symlink", "give the file itself") from None
        raise from_os_error(exc, f"read the password file {path}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidOptionError(f"the password file {path} is not a regular file "
                                     f"({stat.filemode(st.st_mode)})", "give a plain file of 'name:password' lines")
        if st.st_uid != os.geteuid():
            raise InvalidOptionError(f"the password file {path} belongs to uid {st.st_uid}, not to you: its "
                                     "owner could change every student's password", fix)
        if st.st_mode & 0o077:
            raise InvalidOptionError(f"the password file {path} is readable or writable by others "
                                     f"({stat.filemode(st.st_mode)}): any student could read every password", fix)
        return parse_passwords(fh.read().decode(errors="replace"))


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


#: Where the hub writes the passwords it made for new accounts, in its state folder (root only).
PASSWORDS_FILE = "passwords"


def enroll(students: tuple[str, ...], given: dict[str, str], state_dir: Path) -> Path | None:
    """Every student's account, with their ``given`` password; new accounts not given one get a random one.

    The random passwords are appended to ``state_dir/passwords`` (0600, root's),
    which is returned (None when no password was made).
    """
    made = {}
    for name in students:
        password = given.get(name)
        if password is None and lookup(name) is None:
            password = made[name] = secrets.token_urlsafe(9)
        ensure(name, password)
    if not made:
        return None
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = state_dir / PASSWORDS_FILE
    with open(os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as fh:
        fh.writelines(f"{n}:{p}\n" for n, p in made.items())
    return secret
