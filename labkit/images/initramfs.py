"""The tiny guest's initramfs: busybox, a CPUID program and ``/init``, built offline and cached by content."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from labkit import asm, formats
from labkit.errors import InvalidOptionError, MissingToolError
from labkit.images import cache as imagecache
from labkit.images.cache import prune, publish, user_cache, verified
from labkit.images.errors import ImageError

#: Guest-side sources shipped with labkit (the /init script, guest programs in assembly).
GUEST_SOURCES = Path(__file__).parent / "tiny_guest"

_FORMAT = 1  # bump when the initramfs layout changes without init.sh changing
_INIT_SOURCE = "init.sh"
_CPUID_SOURCE = "cpuid.S"
CPUID_ORIGIN = 0x400000 + formats.ELF_HEADERS  # the code follows the ELF headers in one segment


def _busybox() -> tuple[Path, bytes]:
    path = shutil.which("busybox") or "/bin/busybox"
    if not os.path.isfile(path):
        raise MissingToolError("busybox is not installed: the tiny guest's userland is busybox-static",
                               "sudo apt-get install busybox-static (bash scripts/setup.sh installs it)")
    data = Path(path).read_bytes()
    if formats.is_dynamic(data):
        raise ImageError(f"{path} is dynamically linked: inside the guest there is no C library for it",
                         "sudo apt-get install busybox-static (it replaces the dynamic busybox)")
    return Path(path), data


def _guest_file(name: str) -> str:
    return (GUEST_SOURCES / name).read_text()


def initramfs_key(command: str | None = None) -> str:
    """The content key of the initramfs for ``command``: changes when anything inside would."""
    _, busybox = _busybox()
    parts = [str(_FORMAT), hashlib.sha256(busybox).hexdigest(), _guest_file(_INIT_SOURCE),
             _guest_file(_CPUID_SOURCE)]
    base = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    if command is None:
        return base
    return f"{base}-cmd-{hashlib.sha256(command.encode()).hexdigest()[:16]}"


def build_initramfs(command: str | None = None, *, rebuild: bool = False, into: Path | None = None) -> Path:
    """The tiny guest's initramfs (gzip'd newc cpio), from a cache or built now.

    With ``command``, a second small cpio holding ``/labkit/command`` is
    appended (Linux unpacks concatenated archives in order), so the 1 MB base
    is built once and every command costs only a copy.
    """
    if command is not None and not command.strip():
        raise InvalidOptionError("the guest command is empty", "pass a shell command, e.g. 'uname -a', or None")
    key = initramfs_key(command)
    name = f"initramfs/tiny-{key}.cpio.gz"
    if not rebuild:
        for cache in imagecache.caches(into):
            found = cache / name
            if found.is_file() and (imagecache.is_shared(cache) or imagecache.sum_file(found).is_file()):
                imagecache.touch(imagecache.sum_file(found))  # in use (its .sha256: the image's own times key checks)
                return verified(found)
    cache = into or user_cache()
    base_key = key.split("-cmd-")[0]
    base = cache / f"initramfs/tiny-{base_key}.cpio.gz"
    with imagecache.locked(cache):
        if rebuild or not base.is_file() or not imagecache.sum_file(base).is_file():
            publish(_base_archive(), base)
        if command is not None:
            extra = formats.cpio([("labkit", 0o040755, b""),
                                  ("labkit/command", 0o100755, command.encode() + b"\n")])
            publish(verified(base).read_bytes() + gzip.compress(extra, mtime=0), cache / name)
        if not imagecache.is_shared(cache):
            prune(cache, keep=(cache / name, base))
        return verified(cache / name)


def _base_archive() -> bytes:
    busybox_path, busybox = _busybox()
    applets = subprocess.run([str(busybox_path), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    cpuid = asm.assemble(_guest_file(_CPUID_SOURCE), bits=64, origin=CPUID_ORIGIN)
    entries: list[tuple[str, int, bytes]] = [(d, 0o040755, b"") for d in ("bin", "dev", "proc", "sys", "tmp")]
    entries += [("dev/console", 0o020600, b"5,1"),  # the kernel opens it for /init's stdin/out
                ("init", 0o100755, _guest_file(_INIT_SOURCE).encode()),
                ("bin/busybox", 0o100755, busybox),
                ("bin/labkit-cpuid", 0o100755, formats.static_elf(cpuid.image, cpuid.origin))]
    entries += [(f"bin/{a}", 0o120777, b"busybox") for a in sorted(set(applets) - {"busybox"})]
    return gzip.compress(formats.cpio(entries), compresslevel=6, mtime=0)
