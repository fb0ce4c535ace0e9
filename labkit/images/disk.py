"""Disk images for the tiny guest, through ``qemu-img``: a base, a qcow2 overlay on it, snapshots, checks.

A guest's disk is a file on the host.  ``qcow2`` (QEMU copy-on-write v2)
stores only the clusters the guest wrote and can point at a *backing file*
for the rest: many guests share one read-only base, each writes into its own
small overlay.  Everything here asks ``qemu-img`` itself (its JSON output),
so what the lab shows is what QEMU reads.

Errors: a path that does not exist, a file that is no disk image, a backing
file that is gone — each is one :class:`DiskImageError` with a fix, before
QEMU would fail on it later.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from labkit import runtime
from labkit.errors import InvalidOptionError

QEMU_IMG = "qemu-img"

#: The formats the lab's disks use: a raw base (bytes as the guest sees them) and qcow2 overlays.
FORMATS = ("raw", "qcow2")


class DiskImageError(InvalidOptionError):
    """A disk image that cannot be used: missing, not an image, or its backing file is gone."""


@dataclass(frozen=True)
class ImageInfo:
    """One image of a chain as ``qemu-img info --output=json`` reports it."""

    path: Path
    format: str  # "raw", "qcow2", ...
    virtual_size: int  # bytes the guest sees
    actual_size: int  # bytes the file occupies on the host's disk (allocated blocks)
    backing: Path | None  # the backing file, for an overlay
    cluster_size: int | None  # qcow2's unit of allocation
    snapshots: tuple[str, ...]  # names of qcow2's internal snapshots


def qemu_img() -> str:
    """Path of ``qemu-img``, or a :class:`MissingToolError` saying what to install."""
    return runtime.require_program(QEMU_IMG, "qemu-utils")


def _run(args: list[str], what: str, path: Path) -> str:
    """Run ``qemu-img args``; its complaint becomes one :class:`DiskImageError` about ``path``."""
    proc = subprocess.run([qemu_img(), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        detail = said[-1] if said else f"exit status {proc.returncode}"
        fix = ("its backing file is gone: recreate the overlay on a base that exists (images.create_overlay)"
               if "backing" in detail.lower() else f"check the image, or run qemu-img {args[0]} by hand")
        raise DiskImageError(f"qemu-img could not {what} {path}: {detail}", fix)
    return proc.stdout


def require_image(path: Path | str) -> Path:
    """``path`` as a Path if it is an existing regular file; else one clear error (before qemu-img guesses)."""
    path = Path(path)
    if not path.exists():
        raise DiskImageError(f"the disk image {path} does not exist",
                             "create one first: images.create_base(path, size_mib) or images.create_overlay")
    if not path.is_file():
        raise DiskImageError(f"the disk image {path} is not a regular file", "pass the path of an image file")
    return path


def info(path: Path | str) -> ImageInfo:
    """``qemu-img info`` of one image; a backing file that is gone is an error here, not at boot."""
    return chain(path)[0]


def chain(path: Path | str) -> list[ImageInfo]:
    """``qemu-img info --backing-chain``: the overlay first, then each backing file down to the base."""
    path = require_image(path)
    raw = json.loads(_run(["info", "--output=json", "--backing-chain", str(path)], "read", path))
    return [_image_info(entry) for entry in (raw if isinstance(raw, list) else [raw])]


def _image_info(entry: dict) -> ImageInfo:
    backing = entry.get("full-backing-filename") or entry.get("backing-filename")
    snaps = tuple(s["name"] for s in entry.get("snapshots", ()))
    return ImageInfo(Path(entry["filename"]), entry["format"], int(entry["virtual-size"]),
                     int(entry.get("actual-size", 0)), Path(backing) if backing else None,
                     entry.get("cluster-size"), snaps)


def require_qcow2(path: Path | str) -> ImageInfo:
    """``info(path)`` of a qcow2 image; a file qemu-img can only read as raw bytes is not one."""
    found = info(path)
    if found.format != "qcow2":
        raise DiskImageError(f"{found.path} is not a qcow2 image (qemu-img reads it as {found.format})",
                             "pass an overlay made by images.create_overlay, or qemu-img create -f qcow2")
    return found


def create_base(path: Path | str, size_mib: int, pattern: bytes = b"labkit-base ") -> Path:
    """A raw base image of ``size_mib`` MiB filled with ``pattern`` (so a guest's read shows real data)."""
    if isinstance(size_mib, bool) or not isinstance(size_mib, int) or not 1 <= size_mib <= 1024:
        raise InvalidOptionError(f"size_mib={size_mib!r}: a base image of 1 to 1024 MiB",
                                 "the lab's disks are small: 16 or 64 MiB is plenty")
    path = Path(path)
    block = (pattern * (2**20 // len(pattern) + 1))[:2**20]
    with open(path, "wb") as out:
        for _ in range(size_mib):
            out.write(block)
    return path


def create_overlay(base: Path | str, path: Path | str, base_format: str = "raw") -> ImageInfo:
    """A qcow2 overlay at ``path`` whose backing file is ``base``: the guest's writes land in ``path`` only."""
    base = require_image(base)
    if base_format not in FORMATS:
        raise InvalidOptionError(f"base_format={base_format!r}: one of {', '.join(FORMATS)}",
                                 "the lab's bases are raw")
    path = Path(path)
    _run(["create", "-q", "-f", "qcow2", "-b", str(base.resolve()), "-F", base_format, str(path)],
         "create an overlay on", base)
    return info(path)


def snapshot(path: Path | str, name: str) -> tuple[str, ...]:
    """Take an internal snapshot ``name`` of a qcow2 image (``qemu-img snapshot -c``); all snapshot names."""
    path = require_image(path)
    _run(["snapshot", "-c", name, str(path)], f"take snapshot {name!r} of", path)
    return info(path).snapshots


def revert(path: Path | str, name: str) -> None:
    """Put a qcow2 image back to its snapshot ``name`` (``qemu-img snapshot -a``): later writes are gone."""
    path = require_image(path)
    _run(["snapshot", "-a", name, str(path)], f"revert to snapshot {name!r}", path)


def identical(a: Path | str, b: Path | str) -> bool:
    """Whether the guest would read the same bytes from both images (``qemu-img compare``, exit 0 or 1)."""
    a, b = require_image(a), require_image(b)
    proc = subprocess.run([qemu_img(), "compare", str(a), str(b)], capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1):
        raise DiskImageError(f"qemu-img could not compare {a} and {b}: {proc.stderr.strip()}",
                             "check both are images (images.info)")
    return proc.returncode == 0


def sha256(path: Path | str) -> str:
    """The SHA-256 of a file's bytes: proof that a base nobody should write stayed as it was."""
    digest = hashlib.sha256()
    with open(require_image(path), "rb") as data:
        while chunk := data.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def file_size(path: Path | str) -> int:
    """The overlay's length in bytes: qcow2 appends each newly allocated cluster at the end of its file."""
    return require_image(path).stat().st_size
