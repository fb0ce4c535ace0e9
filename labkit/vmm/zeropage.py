"""The zero page (``struct boot_params``): the memory map, the command line and the initramfs, for the kernel.

A PC kernel learns where its RAM is from the firmware's e820 map; booted
directly, it learns it from the VMM, which writes the map into the zero page
with the command line's and the initramfs's addresses, and points ``rsi``
at the page.  The guest-physical layout this VMM uses (everything below
1 MiB is only read once, early)::

    0x01000  GDT                      0x07000  zero page (boot_params)
    0x02000  page tables (1 GiB, 2M)  0x20000  command line
    0x9fc00  reserved up to 1 MiB (where a PC has its EBDA, VGA memory and BIOS)
    kernel   at its own physical addresses (vmlinux: 16 MiB)
    initramfs at the top of RAM, page-aligned
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from labkit.vmm import bootparam
from labkit.vmm.errors import TooLittleMemoryError
from labkit.vmm.kernel import LinuxKernel, setup_header_of

ZERO_PAGE = 0x7000
CMDLINE = 0x20000
#: x86's COMMAND_LINE_SIZE: the most a kernel without a setup header (vmlinux) takes.
CMDLINE_MAX = 2048
EBDA_START = 0x9FC00  # the Extended BIOS Data Area of a PC: the last KiB below 640 KiB
HIGH_MEMORY = 0x100000  # 1 MiB: above the legacy holes
#: vmlinux has no setup header to say it: the alignment of a relocatable x86-64 kernel (CONFIG_PHYSICAL_ALIGN).
KERNEL_ALIGNMENT = 0x1000000
#: RAM the kernel needs beyond its own image and the initramfs, to unpack the initramfs and reach /init.
ROOM_TO_RUN = 32 << 20
#: Highest RAM size: one slot below 3 GiB, clear of the 32-bit MMIO hole (IOAPIC at 0xfec00000, local APIC).
MAX_MEMORY = 3 << 30
PAGE = 0x1000


@dataclass(frozen=True)
class E820Entry:
    addr: int
    size: int
    type: int  # bootparam.E820_TYPE_RAM or E820_TYPE_RESERVED

    @property
    def end(self) -> int:
        return self.addr + self.size


def e820_map(memory_size: int) -> tuple[E820Entry, ...]:
    """RAM below the EBDA, the legacy area reserved, RAM from 1 MiB up: what a PC's BIOS would report."""
    return (E820Entry(0, EBDA_START, bootparam.E820_TYPE_RAM),
            E820Entry(EBDA_START, HIGH_MEMORY - EBDA_START, bootparam.E820_TYPE_RESERVED),
            E820Entry(HIGH_MEMORY, memory_size - HIGH_MEMORY, bootparam.E820_TYPE_RAM))


def minimum_memory(kernel: LinuxKernel, initrd_size: int) -> int:
    """The least RAM (a whole MiB) that holds the kernel, the initramfs above it, and :data:`ROOM_TO_RUN`."""
    need = kernel.end + initrd_size + ROOM_TO_RUN
    return -(-need // (1 << 20)) << 20


def check_memory(memory_size: int, kernel: LinuxKernel, initrd_size: int) -> None:
    """Refuse RAM sizes the kernel cannot boot in, or this VMM cannot map, with the size that would do."""
    least = minimum_memory(kernel, initrd_size)
    if memory_size < least:
        raise TooLittleMemoryError(
            f"{memory_size >> 20} MiB of RAM is too little for this kernel ({kernel.size >> 20} MiB from "
            f"{min(s.paddr for s in kernel.loads):#x}), its initramfs ({initrd_size >> 10} KiB) and room to run",
            f"give the guest at least {least >> 20} MiB (--memory {least >> 20})")
    if memory_size > MAX_MEMORY or memory_size % PAGE:
        raise TooLittleMemoryError(f"{memory_size} bytes of RAM: this VMM maps a whole number of pages up to "
                                   f"{MAX_MEMORY >> 20} MiB (below the 32-bit MMIO hole)",
                                   f"use --memory between {least >> 20} and {MAX_MEMORY >> 20}")


def initramfs_address(memory_size: int, initrd_size: int, kernel: LinuxKernel) -> int:
    """The highest page-aligned address that holds the initramfs below the kernel's limit (as GRUB does)."""
    limit = memory_size
    if kernel.header:
        limit = min(limit, setup_header_of(kernel.header).initrd_addr_max + 1)
    addr = (limit - initrd_size) & ~(PAGE - 1)
    if addr < kernel.end:
        raise TooLittleMemoryError(f"the initramfs ({initrd_size >> 10} KiB) does not fit between the kernel's "
                                   f"end ({kernel.end:#x}) and {limit:#x}", "give the guest more memory")
    return addr


def cmdline_limit(kernel: LinuxKernel) -> int:
    """The longest command line the kernel takes (its setup header says, from boot protocol 2.06)."""
    if kernel.header:
        hdr = setup_header_of(kernel.header)
        if hdr.version >= 0x206:
            return hdr.cmdline_size
        return 255
    return CMDLINE_MAX - 1


def zero_page(kernel: LinuxKernel, initrd_addr: int, initrd_size: int,
              e820: tuple[E820Entry, ...]) -> bootparam.boot_params:
    """``struct boot_params`` for this boot: the image's setup header (if any) and what the loader fills in.

    The command line itself is written at :data:`CMDLINE` (see :func:`cmdline_limit`).
    """
    params = bootparam.boot_params()
    if kernel.header:  # boot.rst: copy the setup header from the image, then fill the loader's fields
        ctypes.memmove(ctypes.addressof(params) + bootparam.SETUP_HEADER_OFFSET, kernel.header, len(kernel.header))
    else:  # a vmlinux has no header: write what a bzImage's would say
        params.hdr.boot_flag = bootparam.BOOT_FLAG
        params.hdr.header = bootparam.HDRS_MAGIC
        params.hdr.kernel_alignment = KERNEL_ALIGNMENT
        params.hdr.cmdline_size = CMDLINE_MAX - 1
    hdr = params.hdr
    hdr.type_of_loader = bootparam.LOADER_UNDEFINED
    hdr.loadflags |= bootparam.LOADED_HIGH
    hdr.cmd_line_ptr, params.ext_cmd_line_ptr = CMDLINE & 0xFFFFFFFF, CMDLINE >> 32
    hdr.ramdisk_image, params.ext_ramdisk_image = initrd_addr & 0xFFFFFFFF, initrd_addr >> 32
    hdr.ramdisk_size, params.ext_ramdisk_size = initrd_size & 0xFFFFFFFF, initrd_size >> 32
    params.e820_entries = len(e820)
    for slot, entry in zip(params.e820_table, e820):
        slot.addr, slot.size, slot.type = entry.addr, entry.size, entry.type
    return params
