"""The tiny guest's image cache on disk: private, verified, capped; shared read-only caches beside it.

:mod:`labkit.images` builds the kernel and initramfs; this module is where
they are kept and how they are trusted:

* every file is written atomically with a ``.sha256`` beside it
  (:func:`publish`) and checked on use (:func:`verified`): a truncated or
  corrupted file is a :class:`CorruptCacheError` whose fix is
  ``labkit image build --force``, never a guest that panics; a ``.verified``
  beside it (the user's own cache) records the file that last matched, so
  that an unchanged file is not hashed by every process;
* the user's cache (``runtime.cache_dir()/images``) is private: 0700 dirs,
  0600 files (a guest command may hold a secret); one built with
  ``labkit image build --into DIR`` for a workshop is readable by all;
* the user's cache is capped (:data:`CACHE_MAX_ENV`): least recently used
  images go first (:func:`prune`), ``labkit cleanup --cache`` empties it
  (:func:`clear_cache`);
* caches are searched in order: the user's, then the shared read-only ones
  (``$LABKIT_SHARED_CACHE``, colon-separated, else ``/var/cache/labkit`` if
  it exists).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from labkit import runtime
from labkit.errors import InvalidOptionError, LabkitError, from_os_error


class CorruptCacheError(LabkitError):
    """A cached kernel or initramfs does not match the hash it was stored with."""

    def __init__(self, what: str, fix: str, path: Path) -> None:
        super().__init__(what, fix)
        self.path = path


#: Cap of the user's image cache in MiB (default :data:`CACHE_MAX_MIB`); least recently used images go first.
CACHE_MAX_ENV = "LABKIT_CACHE_MAX_MIB"
CACHE_MAX_MIB = 256


def shared_caches() -> list[Path]:
    """Read-only caches an instructor prepared: ``$LABKIT_SHARED_CACHE`` or ``/var/cache/labkit``."""
    env = os.environ.get("LABKIT_SHARED_CACHE")
    if env is not None:
        return [Path(p) for p in env.split(os.pathsep) if p]
    default = Path("/var/cache/labkit")
    return [default] if default.is_dir() else []


def user_cache() -> Path:
    """Where this user's images are built: ``runtime.cache_dir()/images`` (not created here)."""
    return runtime.cache_dir(create=False) / "images"


def caches(into: Path | None) -> list[Path]:
    return [into] if into else [user_cache(), *shared_caches()]


def is_shared(path: Path) -> bool:
    """Whether ``path`` lies outside this user's own cache (an instructor's cache: readable by all)."""
    return not path.resolve().is_relative_to(user_cache().resolve())


def _mkdirs(folder: Path, shared: bool) -> None:
    """Create ``folder`` (and parents): 0755 in a shared cache, 0700 in the user's private one."""
    if not shared:
        os.chmod(runtime.cache_dir(), 0o700)  # its own mode (made as a parent, it would get 0755)
    folder.mkdir(parents=True, exist_ok=True, mode=0o755 if shared else 0o700)
    os.chmod(folder, 0o755 if shared else 0o700)


def publish(data: bytes, target: Path) -> Path:
    """Write ``data`` to ``target`` atomically with its ``.sha256`` beside it (checked by :func:`verified`).

    In the user's cache the file is private (0600 in 0700 dirs: a guest
    command may hold a password); anywhere else (``image build --into``,
    a payload cache) it is readable by every user.
    """
    shared = is_shared(target)
    _mkdirs(target.parent, shared)
    write_atomically(data, target, 0o644 if shared else 0o600)
    digest = hashlib.sha256(data).hexdigest()
    write_atomically(digest.encode() + b"\n", sum_file(target), 0o644 if shared else 0o600)
    _trust(target, digest, shared)
    return target


def write_atomically(data: bytes, target: Path, mode: int) -> None:
    """Write ``target`` (mode ``mode``) so that a reader finds the old file or the whole new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sum_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verified_file(path: Path) -> Path:
    """Where the user's cache records that ``path`` matched its hash, and as which file (:func:`verified`)."""
    return path.with_name(path.name + ".verified")


def _identity(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file is replaced or written to: its inode, size, mtime and ctime (which no one sets)."""
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


#: Files whose hash matched, by identity: a notebook booting ten times hashes each file once.
_verified_ok: dict[Path, tuple[int, int, int, int]] = {}


def _record(expected: str, ident: tuple[int, int, int, int]) -> str:
    return f"{expected} {' '.join(map(str, ident))}\n"


def _trust(path: Path, expected: str, shared: bool) -> None:
    """Remember that ``path`` matched ``expected``: in this process, and (the user's own cache) on disk, so that
    the next process does not hash it again while it is the same file (the 53 MB vmlinux: 53 ms here, 2.4 s in
    the emulated AMD-V machine).  A file replaced, truncated or written to has another identity: hashed again."""
    ident = _verified_ok[path] = _identity(path)
    if not shared:
        with contextlib.suppress(OSError):  # a read-only cache: hashed again next time
            write_atomically(_record(expected, ident).encode(), verified_file(path), 0o600)


def verified(path: Path, sha256: str | None = None) -> Path:
    """``path`` after checking its content against ``sha256`` (default: its ``.sha256`` file).

    Raises :class:`CorruptCacheError` with the fix when it does not match: a
    truncated initramfs or kernel would otherwise boot into a kernel panic.
    """
    try:
        ident = _identity(path)
        if _verified_ok.get(path) == ident:
            return path
        expected = sha256 or sum_file(path).read_text().strip()
        shared = is_shared(path)
        if not shared and _recorded(path) == _record(expected, ident):
            _verified_ok[path] = ident
            return path
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError as exc:
        raise CorruptCacheError(f"the cached {path.name} is incomplete: {exc.filename} is missing (stored by an "
                                "older labkit, or removed)", rebuild_fix(path), path) from None
    except OSError as exc:
        raise from_os_error(exc, f"read the cached {path}") from None
    if digest.hexdigest() != expected:
        raise CorruptCacheError(f"the cached {path} is damaged: its content does not match the sha256 it was "
                                f"stored with (a truncated copy, a full disk, or an edit)", rebuild_fix(path), path)
    _trust(path, expected, shared)
    return path


def _recorded(path: Path) -> str | None:
    try:
        return verified_file(path).read_text()
    except OSError:
        return None


def rebuild_fix(path: Path) -> str:
    """The fix for a damaged cached file: rebuild it (own cache), or have the instructor rebuild (shared one)."""
    if not is_shared(path):
        return "labkit image build --force (replaces it)"
    cache = path.parent.parent if path.parent.name == "initramfs" else path.parent.parent.parent
    return (f"ask the instructor to rebuild the shared cache (labkit image build --force --into {cache}); "
            "meanwhile unset LABKIT_SHARED_CACHE to build your own")


@contextlib.contextmanager
def writing(cache: Path, what: str) -> Iterator[None]:
    """Turn a failed write into the cache into a clear error (full disk, read-only cache) saying which."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, LabkitError):
            raise
        raise from_os_error(exc, f"{what} in {cache}") from None


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """One builder at a time per cache (parallel test workers, two notebooks)."""
    with writing(cache, "write the guest image cache"):
        _mkdirs(cache, is_shared(cache))
        lock = open(cache / ".lock", "a")
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_shared(cache):
            _make_private(cache)
        try:
            with writing(cache, "write the guest image cache"):
                yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


#: Held shared (``flock``) while an emulated machine reads the cache through its view of this host's files.
READERS_LOCK = ".readers"


@contextlib.contextmanager
def reading(cache: Path) -> Iterator[None]:
    """Keep :func:`prune` off ``cache`` while a reader it cannot see may use any image: L1 (:mod:`labkit.nested`).

    Seen: notebook 06's QEMU boot inside L1 found its initramfs, and a moment later the host's prune (another
    test building an image) removed it: ``OSError: [Errno 116] Stale file handle`` inside L1.  A prune meanwhile
    removes nothing; the next build after the reader is gone prunes.
    """
    with contextlib.ExitStack() as stack:
        try:
            lock = stack.enter_context(_readers(cache))
        except OSError:  # no cache yet, or one this user cannot write: nothing of it is pruned now
            pass
        else:
            fcntl.flock(lock, fcntl.LOCK_SH)
        yield


def _readers(cache: Path) -> IO[str]:
    """The cache's readers lock file, private as the cache is."""
    return os.fdopen(os.open(cache / READERS_LOCK, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600), "a")


def _make_private(cache: Path) -> None:
    """Tighten a user cache an older labkit left world-readable (0755/0644) to 0700/0600."""
    for path in [cache, *cache.rglob("*")]:
        with contextlib.suppress(OSError):
            st = path.lstat()
            if st.st_mode & 0o077 and not stat.S_ISLNK(st.st_mode):
                os.chmod(path, 0o700 if stat.S_ISDIR(st.st_mode) else 0o600)


def check_into(into: Path) -> Path:
    """``image build --into DIR``: a new directory, or one that already is a labkit cache — nothing else.

    Building into an existing directory of other files (``/etc``, a home)
    would mix the lab's files into it; a file or a missing parent is a typo.
    """
    into = Path(into)
    if into.exists() and not into.is_dir():
        raise InvalidOptionError(f"--into {into}: that is a file, not a directory",
                                 "name a new directory (it is created) or an existing labkit image cache")
    if into.is_dir():
        try:
            entries = {e.name for e in into.iterdir()}
        except OSError as exc:
            raise from_os_error(exc, f"read --into {into}") from None
        if entries - {"kernels", "initramfs", ".lock"}:
            raise InvalidOptionError(f"--into {into}: that directory already holds other files "
                                     f"({', '.join(sorted(entries)[:3])}…), it is not a labkit image cache",
                                     "name a new directory (it is created), e.g. /var/cache/labkit")
    elif not into.parent.is_dir():
        raise InvalidOptionError(f"--into {into}: its parent {into.parent} does not exist",
                                 f"create it first (mkdir -p {into.parent}) or name another directory")
    return into


#: An image used in the last minute is never pruned: a boot may be about to open it.
PRUNE_MIN_AGE_S = 60


def cache_max_bytes() -> int:
    """The user's cache cap: ``$LABKIT_CACHE_MAX_MIB`` MiB, default :data:`CACHE_MAX_MIB`."""
    raw = os.environ.get(CACHE_MAX_ENV, "")
    try:
        mib = int(raw) if raw else CACHE_MAX_MIB
    except ValueError:
        raise InvalidOptionError(f"{CACHE_MAX_ENV}={raw!r} is not a whole number of MiB",
                                 f"e.g. export {CACHE_MAX_ENV}={CACHE_MAX_MIB}") from None
    if mib < 1:
        raise InvalidOptionError(f"{CACHE_MAX_ENV}={raw!r}: the cap must be at least 1 MiB",
                                 f"e.g. export {CACHE_MAX_ENV}={CACHE_MAX_MIB}")
    return mib * 2**20


def _entries(cache: Path) -> list[tuple[Path, list[Path]]]:
    """The cache's prunable entries: each initramfs (with its .sha256), each kernel folder (all its files)."""
    entries = [(p, [p, sum_file(p), verified_file(p)]) for p in (cache / "initramfs").glob("tiny-*.cpio.gz")]
    entries += [(folder, [f for f in folder.rglob("*") if not f.is_dir()])
                for folder in (cache / "kernels").glob("*") if folder.is_dir()]
    return entries


def _used_at(entry: Path) -> float:
    """When an entry was last used: an initramfs is touched on use, a kernel folder when its vmlinuz is."""
    with contextlib.suppress(OSError):
        return max(p.stat().st_mtime for p in ([entry] if entry.is_file() else entry.iterdir()))
    return 0.0


def _size(files: list[Path]) -> int:
    total = 0
    for f in files:
        with contextlib.suppress(OSError):
            total += f.lstat().st_size
    return total


def drop(entry: Path) -> None:
    """Remove one cache entry: a kernel folder, or an image file with its ``.sha256``."""
    if entry.is_dir():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)
        sum_file(entry).unlink(missing_ok=True)
        verified_file(entry).unlink(missing_ok=True)
        _verified_ok.pop(entry, None)


def cache_size(cache: Path | None = None) -> int:
    """Bytes the user's cache (or ``cache``) holds."""
    return sum(_size(files) for _, files in _entries(cache or user_cache()))


def prune(cache: Path, keep: tuple[Path, ...] = ()) -> list[Path]:
    """Remove least recently used images until the cache is under :func:`cache_max_bytes`; what went.

    ``keep`` (the image just built) and anything used in the last
    :data:`PRUNE_MIN_AGE_S` seconds stay, even over the cap; everything stays
    while an emulated machine reads the cache (:func:`reading`).
    """
    limit, fresh = cache_max_bytes(), time.time() - PRUNE_MIN_AGE_S
    with _readers(cache) as readers:
        try:
            fcntl.flock(readers, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # an emulated machine may be using any of them (:func:`reading`)
        return _prune(cache, keep, limit, fresh)


def _prune(cache: Path, keep: tuple[Path, ...], limit: int, fresh: float) -> list[Path]:
    entries = sorted(_entries(cache), key=lambda e: _used_at(e[0]))
    total = sum(_size(files) for _, files in entries)
    removed = []
    for entry, files in entries:
        if total <= limit:
            break
        if entry in keep or any(entry == k.parent for k in keep) or _used_at(entry) > fresh:
            continue
        total -= _size(files)
        drop(entry)
        removed.append(entry)
    return removed


def clear_cache() -> tuple[list[Path], int]:
    """``labkit cleanup --cache``: every image in the user's cache except those in use this minute; (gone, bytes)."""
    cache, fresh = user_cache(), time.time() - PRUNE_MIN_AGE_S
    gone: list[Path] = []
    freed = 0
    if not cache.is_dir():
        return gone, freed
    with locked(cache):
        for entry, files in _entries(cache):
            if _used_at(entry) > fresh:
                continue
            freed += _size(files)
            drop(entry)
            gone.append(entry)
    return gone, freed


def touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:  # a read-only shared cache: its owner prunes it
        pass
