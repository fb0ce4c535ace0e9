"""The byte layouts a guest image is made of: the Linux boot header, ELF, newc cpio.

Pure functions over ``bytes`` (the one exception: lz4/zstd payloads are
undone by their command line tools), so :mod:`labkit.images` can stay about
finding, building and caching things.  References: the kernel's
``Documentation/x86/boot.rst`` (the bzImage setup header), the ELF-64 object
file format, ``Documentation/driver-api/early-userspace/buffer-format.rst``
(initramfs = newc cpio).
"""

from __future__ import annotations

import bz2
import io
import lzma
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from typing import Literal

#: Size of the ELF64 header plus one program header: where :func:`static_elf` puts the code.
ELF_HEADERS = 64 + 56
PT_LOAD, PT_INTERP, PT_NOTE = 1, 3, 4
XEN_ELFNOTE_PHYS32_ENTRY = 18  # the PVH entry point QEMU looks for in an uncompressed kernel

#: Magic numbers of the compressors a bzImage payload may use.
_PAYLOADS = (
    (b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"\x5d\x00\x00", "lzma"), (b"BZh", "bzip2"),
    (b"\x02\x21\x4c\x18", "lz4"), (b"\x28\xb5\x2f\xfd", "zstd"),
)


# --------------------------------------------------------------------------- Linux kernel images


def is_bzimage(data: bytes) -> bool:
    """The x86 boot protocol's setup header magic ``HdrS`` at offset 0x202."""
    return data[0x202:0x206] == b"HdrS"


def kernel_kind(data: bytes) -> Literal["bzImage", "vmlinux"] | None:
    """``bzImage``, an uncompressed ``vmlinux`` QEMU can enter directly (PVH note), or neither."""
    if is_bzimage(data):
        return "bzImage"
    if has_pvh_note(data):
        return "vmlinux"
    return None


def kernel_release(data: bytes) -> str | None:
    """``uname -r`` of a kernel image, from its boot header's version string or its banner."""
    if is_bzimage(data):
        offset = struct.unpack_from("<H", data, 0x20E)[0]
        if offset:
            text = data[offset + 0x200:offset + 0x300].split(b"\0")[0].decode("ascii", "replace")
            return text.split()[0] if text else None
    match = re.search(rb"Linux version (\S+)", data)
    return match.group(1).decode() if match else None


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The uncompressed kernel ELF inside a bzImage, or None when it cannot be had here.

    The setup header (boot protocol ≥ 2.08) says where the compressed payload
    is; the payload's magic says which compressor made it.  gzip, xz, lzma
    and bzip2 are undone with Python's standard library, lz4 and zstd with
    their command line tools.  Only an ELF with a PVH entry note is returned:
    that is what QEMU can start directly.
    """
    if not is_bzimage(bzimage) or struct.unpack_from("<H", bzimage, 0x206)[0] < 0x208:
        return None
    start = ((bzimage[0x1F1] or 4) + 1) * 512  # the protected-mode code follows the setup sectors
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    payload = bzimage[start + offset:start + offset + length]
    kind = next((name for magic, name in _PAYLOADS if payload.startswith(magic)), None)
    try:
        if kind == "gzip":
            data = zlib.decompressobj(wbits=31).decompress(payload)
        elif kind in ("xz", "lzma"):
            data = lzma.LZMADecompressor(lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE).decompress(payload)
        elif kind == "bzip2":
            data = bz2.BZ2Decompressor().decompress(payload)
        elif kind in ("lz4", "zstd") and shutil.which(kind):
            # The kernel build appends the 4-byte uncompressed size; the tools want the bare stream.
            data = subprocess.run([kind, "-dc"], input=payload[:-4], capture_output=True, check=True).stdout
        else:
            return None
    except (OSError, EOFError, zlib.error, lzma.LZMAError, subprocess.CalledProcessError):
        return None
    return data if has_pvh_note(data) else None


# --------------------------------------------------------------------------- ELF


def elf64_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(p_type, p_offset, p_filesz) of each program header of a little-endian ELF64 file."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    segments = []
    for i in range(phnum):
        ptype, _flags, offset = struct.unpack_from("<IIQ", data, phoff + i * phentsize)
        filesz, = struct.unpack_from("<Q", data, phoff + i * phentsize + 32)
        segments.append((ptype, offset, filesz))
    return segments


@dataclass(frozen=True)
class Elf64Image:
    """What a loader needs of an ELF64 executable: its machine, its entry and where each ``PT_LOAD`` goes."""

    machine: int  # e_machine: 62 = x86-64
    entry: int  # e_entry (a kernel's vmlinux: the physical address of its 64-bit entry, startup_64)
    loads: tuple[LoadSegment, ...]


@dataclass(frozen=True)
class LoadSegment:
    """A ``PT_LOAD``: ``filesz`` bytes from ``offset`` of the file to physical ``paddr``, zeros up to ``memsz``."""

    offset: int
    paddr: int
    filesz: int
    memsz: int


EM_X86_64 = 62


def elf64_image(data: bytes) -> Elf64Image | None:
    """The loadable view of a little-endian ELF64 file (None: not one, or its program headers are cut off)."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    machine, = struct.unpack_from("<H", data, 0x12)
    entry, phoff = struct.unpack_from("<QQ", data, 0x18)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    if phentsize < 56 or phoff + phnum * phentsize > len(data):
        return None
    loads = []
    for i in range(phnum):
        ptype, _flags, offset, _vaddr, paddr, filesz, memsz = struct.unpack_from("<IIQQQQQ", data,
                                                                                 phoff + i * phentsize)
        if ptype == PT_LOAD:
            loads.append(LoadSegment(offset, paddr, filesz, memsz))
    return Elf64Image(machine, entry, tuple(loads))


def is_dynamic(data: bytes) -> bool:
    """The ELF names a program interpreter (``ld.so``): it needs shared libraries to run."""
    return any(ptype == PT_INTERP for ptype, _, _ in elf64_segments(data))


def has_pvh_note(data: bytes) -> bool:
    """The ELF carries Xen's PHYS32_ENTRY note: QEMU can start it in 32-bit mode (PVH boot)."""
    for ptype, offset, size in elf64_segments(data):
        pos, end = offset, offset + size
        while ptype == PT_NOTE and pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            if data[pos + 12:pos + 12 + namesz] == b"Xen\0" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def static_elf(code: bytes, entry: int) -> bytes:
    """A Linux x86-64 executable around flat code: one ELF header, one RWX ``PT_LOAD``.

    ``code`` must be assembled at ``entry``, which is :data:`ELF_HEADERS`
    bytes above a page boundary: the segment maps the headers and the code
    together, so the file is the memory image.
    """
    base = entry - ELF_HEADERS
    if base % 0x1000:
        raise ValueError(f"entry {entry:#x} must be {ELF_HEADERS} bytes above a page boundary")
    size = ELF_HEADERS + len(code)
    header = struct.pack("<4s5B7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0,  # ELF64, LSB, v1, SysV
                         2, 0x3E, 1, entry, 64, 0, 0, 64, 56, 1, 0, 0, 0)  # ET_EXEC, x86-64, 1 phdr
    segment = struct.pack("<IIQQQQQQ", PT_LOAD, 7, 0, base, base, size, size, 0x1000)
    return header + segment + code


# --------------------------------------------------------------------------- cpio


def cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc ("070701") cpio archive of (name, mode, data), owned by root, mtime 0.

    Character devices (``mode`` 0o020xxx) carry ``b"major,minor"`` as data.
    Fixed owners and times make the archive depend on its contents only.
    """
    out = io.BytesIO()

    def pad() -> None:
        out.write(b"\0" * (-out.tell() % 4))

    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        rdev: tuple[int, ...] = (0, 0)
        if mode & 0o170000 == 0o020000:
            rdev, data = tuple(map(int, data.split(b","))), b""
        fields = (ino, mode, 0, 0, 2 if mode & 0o040000 else 1, 0, len(data), 0, 0, *rdev, len(name) + 1, 0)
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0")
        pad()
        out.write(data)
        pad()
    return out.getvalue()
