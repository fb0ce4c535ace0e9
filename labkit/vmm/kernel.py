"""The kernel loader: which file is a kernel this VMM can enter in 64-bit mode, and where its bytes go.

Two kinds of file hold an x86-64 Linux kernel:

* ``vmlinux``, the ELF the kernel build links: its ``PT_LOAD`` segments say
  at which *physical* addresses they belong, and ``e_entry`` is the physical
  address of ``startup_64``, the 64-bit entry (what Firecracker boots);
* ``bzImage``, what distributions ship: a real-mode setup part, then the
  protected-mode part, a small decompressor whose 64-bit entry is 0x200
  bytes in (boot.rst, "64-bit boot protocol"; ``xloadflags`` bit
  ``XLF_KERNEL_64`` says it has one).  Its setup header is copied into the
  zero page.

Only headers are read here; :func:`copy_into` puts the bytes in guest memory
straight from the file (no copy of a 50 MB kernel in between).
"""

from __future__ import annotations

import ctypes
import mmap
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from labkit import formats
from labkit.errors import MissingKernelError, from_os_error
from labkit.formats import LoadSegment
from labkit.kvm.memory import GuestMemory
from labkit.vmm import bootparam
from labkit.vmm.errors import No64BitEntryError, NotAKernelError

#: Where a bzImage's protected-mode part goes when it names no preferred address (boot.rst: 0x100000).
BZIMAGE_DEFAULT_LOAD = 0x100000
#: The 64-bit entry's offset in a bzImage's protected-mode part.
BZIMAGE_ENTRY_64 = 0x200
#: Highest physical address this VMM loads anything at (its RAM is one slot below the 32-bit MMIO hole).
LOAD_LIMIT = 1 << 32


@dataclass(frozen=True)
class LinuxKernel:
    """A kernel file understood: where each piece goes, where to enter, and how much memory it spans."""

    path: Path
    kind: Literal["vmlinux", "bzImage"]
    entry: int  # physical address of the 64-bit entry point
    loads: tuple[LoadSegment, ...]  # file pieces to copy to physical addresses
    end: int  # first physical address above the kernel (what it occupies while it starts, bss included)
    header: bytes = b""  # a bzImage's setup header, copied into the zero page (vmlinux has none)

    def header_fields(self) -> bootparam.setup_header:
        """A bzImage's setup header as the structure (all zero for a vmlinux, which has none)."""
        return setup_header_of(self.header)

    @property
    def size(self) -> int:
        """Bytes of guest memory the kernel spans, from its lowest load address to :attr:`end`."""
        return self.end - min(s.paddr for s in self.loads)


def read_kernel(path: Path | str) -> LinuxKernel:
    """Read a kernel's headers: a ``vmlinux`` ELF or a ``bzImage`` with a 64-bit entry, else a clear error."""
    path = Path(path)
    if not path.exists():
        raise MissingKernelError(f"kernel {path} does not exist",
                                 "build the lab's guest with `labkit image build`, or pass a vmlinux or bzImage")
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a device or a pipe: never opened (a FIFO would block)
            raise NotAKernelError(f"{path} is not a regular file, so not a kernel image", _KERNEL_FIX)
        with open(path, "rb") as f:
            if path.stat().st_size == 0:
                raise NotAKernelError(f"{path} is empty, not a kernel", _KERNEL_FIX)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _parse(path, data)
    except OSError as exc:
        raise from_os_error(exc, f"read the kernel {path}") from None


_KERNEL_FIX = ("pass an x86-64 Linux kernel: the cached vmlinux (`labkit image info` lists it) or a bzImage "
               "such as /boot/vmlinuz-*")


def _parse(path: Path, data) -> LinuxKernel:
    if formats.is_bzimage(data):
        return _bzimage(path, data)
    if data[:4] == b"\x7fELF":
        return _vmlinux(path, data)
    raise NotAKernelError(f"{path} is not a Linux kernel: no ELF header and no bzImage setup header "
                          "('HdrS' at offset 0x202)", _KERNEL_FIX)


def _vmlinux(path: Path, data) -> LinuxKernel:
    if data[4] != 2:
        raise No64BitEntryError(f"{path} is a 32-bit ELF: it has no 64-bit entry point", _KERNEL_FIX)
    image = formats.elf64_image(data)
    if image is None:
        raise NotAKernelError(f"{path} is a damaged ELF file (its program headers are cut off)", _KERNEL_FIX)
    if image.machine != formats.EM_X86_64:
        raise No64BitEntryError(f"{path} is an ELF for machine {image.machine}, not x86-64 (62): this VMM "
                                "enters kernels in 64-bit x86 mode", _KERNEL_FIX)
    loads = tuple(s for s in image.loads if s.memsz)
    if not any(s.paddr <= image.entry < s.paddr + s.memsz for s in loads):
        raise No64BitEntryError(f"{path}: its entry point {image.entry:#x} is in no loadable segment, so it is "
                                "not a kernel's physical 64-bit entry", _KERNEL_FIX)
    end = max(s.paddr + s.memsz for s in loads)
    if end > LOAD_LIMIT or any(s.offset + s.filesz > len(data) for s in loads):
        raise NotAKernelError(f"{path}: its segments lie beyond 4 GiB or beyond the file's end", _KERNEL_FIX)
    return LinuxKernel(path, "vmlinux", image.entry, loads, end)


def _bzimage(path: Path, data) -> LinuxKernel:
    size = setup_header_end(data)
    header = bytes(data[bootparam.SETUP_HEADER_OFFSET:size])
    hdr = setup_header_of(header)
    if hdr.version < 0x20C or not hdr.xloadflags & bootparam.XLF_KERNEL_64:
        raise No64BitEntryError(
            f"{path} is a bzImage without a 64-bit entry point (boot protocol {hdr.version >> 8}."
            f"{hdr.version & 0xFF:02d}, xloadflags {hdr.xloadflags:#x}: XLF_KERNEL_64 is not set)",
            "boot a 64-bit kernel built since Linux 3.8, or its uncompressed vmlinux")
    start = ((hdr.setup_sects or 4) + 1) * 512  # the protected-mode part follows the setup sectors
    if start >= len(data):
        raise NotAKernelError(f"{path} is a truncated bzImage", _KERNEL_FIX)
    load = hdr.pref_address or BZIMAGE_DEFAULT_LOAD
    code = LoadSegment(start, load, len(data) - start, len(data) - start)
    return LinuxKernel(path, "bzImage", load + BZIMAGE_ENTRY_64, (code,),
                       load + max(hdr.init_size, code.memsz), header)


def setup_header_end(data) -> int:
    """Where the setup header ends in a bzImage: the byte at 0x201 is the jump's offset past 0x202."""
    return min(0x202 + data[0x201], bootparam.SETUP_HEADER_OFFSET + ctypes.sizeof(bootparam.setup_header))


def setup_header_of(header: bytes) -> bootparam.setup_header:
    """A (possibly shorter, older) setup header as the structure, missing fields zero."""
    hdr = bootparam.setup_header()
    ctypes.memmove(ctypes.addressof(hdr), header, min(len(header), ctypes.sizeof(hdr)))
    return hdr


def copy_into(kernel: LinuxKernel, memory: GuestMemory) -> None:
    """Copy each piece of the kernel file to its physical address in guest memory (zeros past ``filesz``)."""
    with open(kernel.path, "rb") as f:
        for segment in kernel.loads:
            slot = memory.slot_at(segment.paddr, segment.memsz)
            at = segment.paddr - slot.guest_phys_addr
            f.seek(segment.offset)
            view = memoryview(slot.mapping)
            try:
                got = f.readinto(view[at:at + segment.filesz])
            finally:
                view.release()
            if got != segment.filesz:
                raise NotAKernelError(f"{kernel.path} changed while it was loaded (short read)",
                                      "load it again")
            # guest RAM is fresh anonymous memory: the bss (memsz beyond filesz) is already zero
