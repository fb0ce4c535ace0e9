"""labkit.runtime: whose names, which private dirs — what makes many students on one host safe."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

import pytest

from labkit import asm, runtime


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private stand-in for /tmp, where run dirs are made."""
    monkeypatch.setattr(runtime.tempfile, "gettempdir", lambda: str(tmp_path))
    return tmp_path


def test_the_name_follows_the_uid_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`setpriv`, `su -m` or a hand-set $USER must not make a student name things after someone else."""
    real = pwd.getpwuid(os.geteuid()).pw_name
    for var in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.setenv(var, "someone-else")
    assert runtime.user_name() == runtime.user_name(os.geteuid()) == real.lower()
    assert runtime.prefix() == f"labkit-{real.lower()}-"


def test_a_uid_without_a_passwd_entry_still_has_a_name() -> None:
    unknown = max(p.pw_uid for p in pwd.getpwall()) + 12345
    assert runtime.user_name(unknown) == f"uid{unknown}"


def test_run_dir_is_private_and_created_once(tmp_root: Path) -> None:
    path = runtime.run_dir()
    assert path == runtime.run_dir_of() == tmp_root / runtime.prefix().rstrip("-")
    assert path.stat().st_mode & 0o777 == 0o700 and path.stat().st_uid == os.geteuid()
    assert runtime.run_dir() == path


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return tmp_path / "cache"


@pytest.mark.parametrize("squat", ["open to all", "symlink", "someone else's"])
def test_run_dir_made_by_someone_else_is_never_used(tmp_root: Path, own_cache: Path, squat: str) -> None:
    """/tmp is shared: a dir of that name that is not private to this user is not used, nor does it lock us out."""
    path = runtime.run_dir_of()
    if squat == "open to all":
        path.mkdir()
        path.chmod(0o777)
    elif squat == "symlink":
        (tmp_root / "elsewhere").mkdir(mode=0o700)
        path.symlink_to(tmp_root / "elsewhere")
    else:
        if os.geteuid() != 0:
            pytest.skip("giving a directory to another user needs root (CI runs as root)")
        path.mkdir(mode=0o700)
        shutil.chown(path, "nobody")
    fallback = runtime.run_dir()
    assert fallback != path and fallback.parent == tmp_root and fallback.name.startswith(runtime.prefix())
    assert fallback.stat().st_mode & 0o777 == 0o700 and fallback.stat().st_uid == os.geteuid()
    assert runtime.run_dir() == fallback  # every later process finds the same one
    assert runtime.squatted(path, runtime.user_name()) is not None
    runtime.scratch_dir("qemu")
    assert [p.parent for p in tmp_root.rglob("qemu-*")] == [fallback]  # nothing went through the squatted name


def test_run_dir_prefers_a_private_xdg_runtime_dir(tmp_root: Path, own_cache: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_root / "run-user"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert runtime.run_dir() == xdg / "labkit" and (xdg / "labkit").stat().st_mode & 0o777 == 0o700
    xdg.chmod(0o755)  # not private: not used
    assert runtime.run_dir() == tmp_root / runtime.prefix().rstrip("-")


def test_a_killed_processs_scratch_dirs_are_reclaimed_by_the_next(tmp_root: Path, own_cache: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = runtime.run_dir() / f"qemu-{gone.pid}-abcd1234"
    live = runtime.run_dir() / f"qemu-{os.getppid()}-abcd1234"
    dead.mkdir()
    live.mkdir()
    monkeypatch.setattr(runtime, "_reclaimed", False)
    runtime.scratch_dir("qemu")
    assert not dead.exists() and live.exists()  # only the dead process's dir goes


def test_scratch_dirs_carry_their_process_id(tmp_root: Path) -> None:
    path = runtime.scratch_dir("qemu")
    match = runtime.SCRATCH_NAME.fullmatch(path.name)
    assert path.parent == runtime.run_dir() and match and int(match["pid"]) == os.getpid()
    assert match["purpose"] == "qemu"
    with pytest.raises(RuntimeError), runtime.scratch("test-cpuid") as scratch:
        assert runtime.SCRATCH_NAME.fullmatch(scratch.name)["purpose"] == "test-cpuid"
        raise RuntimeError("interrupted")
    assert not scratch.exists()


def test_assembling_leaves_nothing_in_tmp(tmp_root: Path) -> None:
    """The assembler's files live in the run dir while it works, and are gone after."""
    program = asm.assemble(f"hlt  # {tmp_root}", bits=16)  # a source of its own: assembled now, not cached
    assert program.image == b"\xf4"
    assert list(tmp_root.iterdir()) == [runtime.run_dir()] and not any(runtime.run_dir().iterdir())


def test_a_missing_program_names_its_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """asm and qemu find their programs through runtime.require_program: a clear error, the apt package."""
    from labkit.errors import MissingToolError

    assert runtime.require_program("sh", "dash").endswith("/sh")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="as is not installed") as err:
        asm.assemble(f"nop  # {tmp_path}", bits=64)  # source never assembled before: nothing cached
    assert err.value.fix == "sudo apt-get install binutils (./kvmlab setup installs it)"
