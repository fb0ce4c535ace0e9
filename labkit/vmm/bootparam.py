"""The x86 Linux boot protocol's structures, as ``<asm/bootparam.h>`` defines them (pure data).

A boot loader hands the kernel one 4 KiB page, ``struct boot_params`` — the
*zero page* — holding the setup header (where the command line and the
initramfs are), the e820 memory map, and much that only BIOS-era loaders
fill.  These are :mod:`ctypes` mirrors with the header's field names, so a
test can hold every offset against the C compiler's (``tests/test_vmm_layouts.py``).
Reference: the kernel's ``Documentation/arch/x86/boot.rst``.
"""

from __future__ import annotations

import ctypes
from ctypes import c_uint8 as u8
from ctypes import c_uint16 as u16
from ctypes import c_uint32 as u32
from ctypes import c_uint64 as u64

# setup_header.loadflags
LOADED_HIGH = 1 << 0  # the protected-mode kernel is at 0x100000, not 0x10000
KEEP_SEGMENTS = 1 << 6
CAN_USE_HEAP = 1 << 7  # heap_end_ptr is valid
# setup_header.xloadflags
XLF_KERNEL_64 = 1 << 0  # the kernel has the 64-bit entry point at +0x200
XLF_CAN_BE_LOADED_ABOVE_4G = 1 << 1

#: "HdrS": the setup header's magic, at offset 0x202 of a bzImage.
HDRS_MAGIC = 0x53726448
#: The setup sector's last two bytes, as on every PC boot sector.
BOOT_FLAG = 0xAA55
#: setup_header.type_of_loader for a loader that has no ID assigned (boot.rst: 0xff = undefined).
LOADER_UNDEFINED = 0xFF
#: Where the setup header starts, in a bzImage and in boot_params alike.
SETUP_HEADER_OFFSET = 0x1F1

E820_MAX_ENTRIES_ZEROPAGE = 128
# E820 types (the kernel's asm/e820/types.h; they came from the BIOS call INT 15h, AX=E820h)
E820_TYPE_RAM = 1
E820_TYPE_RESERVED = 2


class setup_header(ctypes.LittleEndianStructure):
    """The bzImage's header, copied into boot_params: the loader reads some fields and fills others."""

    _pack_ = 1
    _fields_ = [
        ("setup_sects", u8), ("root_flags", u16), ("syssize", u32), ("ram_size", u16), ("vid_mode", u16),
        ("root_dev", u16), ("boot_flag", u16), ("jump", u16), ("header", u32), ("version", u16),
        ("realmode_swtch", u32), ("start_sys_seg", u16), ("kernel_version", u16), ("type_of_loader", u8),
        ("loadflags", u8), ("setup_move_size", u16), ("code32_start", u32), ("ramdisk_image", u32),
        ("ramdisk_size", u32), ("bootsect_kludge", u32), ("heap_end_ptr", u16), ("ext_loader_ver", u8),
        ("ext_loader_type", u8), ("cmd_line_ptr", u32), ("initrd_addr_max", u32), ("kernel_alignment", u32),
        ("relocatable_kernel", u8), ("min_alignment", u8), ("xloadflags", u16), ("cmdline_size", u32),
        ("hardware_subarch", u32), ("hardware_subarch_data", u64), ("payload_offset", u32),
        ("payload_length", u32), ("setup_data", u64), ("pref_address", u64), ("init_size", u32),
        ("handover_offset", u32), ("kernel_info_offset", u32),
    ]


class boot_e820_entry(ctypes.LittleEndianStructure):
    """One range of the physical memory map: where RAM is, and what is reserved."""

    _pack_ = 1
    _fields_ = [("addr", u64), ("size", u64), ("type", u32)]


class boot_params(ctypes.LittleEndianStructure):
    """The zero page.  Fields a loader of this lab never fills are opaque byte arrays of their C size."""

    _pack_ = 1
    _fields_ = [
        ("screen_info", u8 * 0x40), ("apm_bios_info", u8 * 0x14), ("_pad2", u8 * 4), ("tboot_addr", u64),
        ("ist_info", u8 * 16), ("acpi_rsdp_addr", u64), ("_pad3", u8 * 8), ("hd0_info", u8 * 16),
        ("hd1_info", u8 * 16), ("sys_desc_table", u8 * 16), ("olpc_ofw_header", u8 * 16),
        ("ext_ramdisk_image", u32), ("ext_ramdisk_size", u32), ("ext_cmd_line_ptr", u32), ("_pad4", u8 * 112),
        ("cc_blob_address", u32), ("edid_info", u8 * 128), ("efi_info", u8 * 32), ("alt_mem_k", u32),
        ("scratch", u32), ("e820_entries", u8), ("eddbuf_entries", u8), ("edd_mbr_sig_buf_entries", u8),
        ("kbd_status", u8), ("secure_boot", u8), ("_pad5", u8 * 2), ("sentinel", u8), ("_pad6", u8 * 1),
        ("hdr", setup_header), ("_pad7", u8 * (0x290 - SETUP_HEADER_OFFSET - ctypes.sizeof(setup_header))),
        ("edd_mbr_sig_buffer", u32 * 16), ("e820_table", boot_e820_entry * E820_MAX_ENTRIES_ZEROPAGE),
        ("_pad8", u8 * 48), ("eddbuf", u8 * (6 * 82)), ("_pad9", u8 * 276),
    ]
