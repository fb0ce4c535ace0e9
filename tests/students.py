"""Unprivileged student accounts for tests that run the lab as several users on one host (root only).

The accounts (``labkit-stu1`` …) are system users with no password, no home
and no login shell; they are created once and left in place, harmless (a
test gives each run a fresh temporary ``HOME``).  Everything a student
starts is gone when :func:`student` exits: their processes (asserted by the
tests, and killed here as a last resort), their per-user libvirt daemons,
their run dir and their ``HOME``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from framework import TOP
from labkit import runtime

#: One test at a time uses the student accounts (also across worktrees): ``--all-users`` sees them all.
LOCK = Path(tempfile.gettempdir()) / "kvmlab-tests-students.lock"
RUNUSER = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "runuser"


@dataclass(frozen=True)
class Student:
    """One unprivileged user and the clean login environment the lab gets as them."""

    name: str
    uid: int
    home: Path
    env: dict[str, str]

    @property
    def run_dir(self) -> Path:
        return runtime.run_dir_of(runtime.user_name(self.uid))

    @property
    def prefix(self) -> str:
        return runtime.prefix(runtime.user_name(self.uid))

    def argv(self, *command: str) -> list[str]:
        """``command`` as this student: runuser, and ``env -i`` for a login's clean environment."""
        return [RUNUSER, "-u", self.name, "--", "env", "-i", *(f"{k}={v}" for k, v in self.env.items()), *command]

    def labkit(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(sys.executable, "-m", "labkit", *args), cwd=TOP, capture_output=True,
                              text=True, timeout=timeout)

    def python(self, script: str) -> subprocess.Popen:
        """Start ``python -c script`` as this student (stdout piped, line-buffered text)."""
        return subprocess.Popen(self.argv(sys.executable, "-u", "-c", script), cwd=TOP, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def processes(self) -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == self.uid]


def ensure_user(name: str) -> int:
    """The uid of system user ``name``, created (locked, no home, no shell) if missing."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
        return pwd.getpwnam(name).pw_uid


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Hold the students' lock (one test at a time, in any worktree, uses the accounts)."""
    with open(LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


#: A shared cache's folder: under /var/tmp, since a Slurm job's private /tmp (tests/slurmcluster.py) would hide
#: one under /tmp; named after the test process that made it, which removes it when done.
SHARED_CACHE_PREFIX = "kvmlab-shared-cache-"


@contextlib.contextmanager
def shared_cache() -> Iterator[Path]:
    """A read-only guest image cache built by root the way an instructor does (``labkit image build --into``)."""
    reclaim_shared_caches()
    base = Path(tempfile.mkdtemp(prefix=f"{SHARED_CACHE_PREFIX}{os.getpid()}-", dir="/var/tmp"))
    try:
        base.chmod(0o755)
        proc = subprocess.run([sys.executable, "-m", "labkit", "image", "build", "--into", str(base / "cache"),
                               "--quiet"], cwd=TOP, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        yield base / "cache"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def reclaim_shared_caches() -> None:
    """Remove the caches whose test process is gone: a run killed from outside ends its workers before their
    ``finally`` (seen: one ~70 MB cache left per killed run)."""
    for old in Path("/var/tmp").glob(f"{SHARED_CACHE_PREFIX}*-*"):
        owner = old.name.removeprefix(SHARED_CACHE_PREFIX).split("-")[0]
        if owner.isdigit() and not runtime.owner_alive(int(owner), since=old.stat().st_ctime):
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def student(name: str, cache: Path | None = None) -> Iterator[Student]:
    """Student ``name`` with a fresh private ``HOME``; afterwards nothing of theirs is left running or on disk."""
    uid = ensure_user(name)
    home = Path(tempfile.mkdtemp(prefix=f"kvmlab-home-{name}-"))
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    if cache is not None:
        env["LABKIT_SHARED_CACHE"] = str(cache)
    try:
        shutil.chown(home, name, name)
        home.chmod(0o700)
        yield Student(name, uid, home, env)
    finally:
        stop_everything(uid)
        shutil.rmtree(home, ignore_errors=True)
        user = runtime.user_name(uid)
        shutil.rmtree(runtime.run_dir_of(user), ignore_errors=True)
        for fallback in Path(tempfile.gettempdir()).glob(f"{runtime.prefix(user)}*"):  # a squatted run dir's stand-in
            if runtime.is_fallback_run_dir(fallback.name, user) and fallback.lstat().st_uid == uid:
                shutil.rmtree(fallback, ignore_errors=True)


def session_daemons(uid: int) -> list[psutil.Process]:
    """The per-user libvirtd and virtlogd libvirt autostarted for ``uid`` (both exit after 120 s idle)."""
    return [p for p in psutil.process_iter(["name", "uids"])
            if p.info["name"] in ("libvirtd", "virtlogd") and p.info["uids"] and p.info["uids"].real == uid]


def stop_everything(uid: int) -> None:
    """Stop every process of ``uid`` (daemons politely first): a test must not leave them running."""
    daemons = session_daemons(uid)
    for proc in daemons:
        proc.terminate()
    psutil.wait_procs(daemons, timeout=10)
    rest = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
    for proc in rest:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(rest, timeout=10)


def skip_unless_root() -> str | None:
    """Why the multi-user tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "creating student accounts and running the lab as them needs root (CI runs as root)"
    return None
