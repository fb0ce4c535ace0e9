"""labkit.kvm.abi matches <linux/kvm.h>, and exits decode from kvm_run as the kernel writes it."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import pytest

from labkit.kvm import abi, exits

IOCTLS = ["KVM_GET_API_VERSION", "KVM_CREATE_VM", "KVM_CHECK_EXTENSION", "KVM_GET_VCPU_MMAP_SIZE",
          "KVM_GET_SUPPORTED_CPUID", "KVM_CREATE_VCPU", "KVM_SET_USER_MEMORY_REGION", "KVM_SET_TSS_ADDR",
          "KVM_RUN", "KVM_GET_REGS", "KVM_SET_REGS", "KVM_GET_SREGS", "KVM_SET_SREGS", "KVM_TRANSLATE",
          "KVM_SET_CPUID2"]
STRUCTS = ["kvm_run", "kvm_regs", "kvm_sregs", "kvm_segment", "kvm_dtable", "kvm_userspace_memory_region",
           "kvm_translation", "kvm_cpuid_entry2", "kvm_cpuid2"]
OFFSETS = [("kvm_run", "exit_reason"), ("kvm_run", "io"), ("kvm_run", "kvm_valid_regs"), ("kvm_sregs", "gdt"),
           ("kvm_sregs", "cr0"), ("kvm_sregs", "efer"), ("kvm_sregs", "interrupt_bitmap")]
CONSTANTS = [name for name in vars(abi) if name.startswith(("KVM_EXIT_", "KVM_CAP_", "KVM_INTERNAL_ERROR_"))
             and isinstance(getattr(abi, name), int)]


@pytest.fixture(scope="module")
def header(tmp_path_factory) -> dict[str, int]:
    """The numbers as the C compiler sees them in <linux/kvm.h>."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (scripts/setup.sh installs it)")
    lines = [f'printf("{n} %lu\\n", (unsigned long){n});' for n in IOCTLS + CONSTANTS]
    lines += [f'printf("sizeof {s} %lu\\n", (unsigned long)sizeof(struct {s}));' for s in STRUCTS]
    lines += [f'printf("offsetof {s}.{f} %lu\\n", (unsigned long)offsetof(struct {s}, {f}));' for s, f in OFFSETS]
    src = tmp_path_factory.mktemp("abi") / "abi.c"
    src.write_text("#include <linux/kvm.h>\n#include <stddef.h>\n#include <stdio.h>\nint main(void) {\n"
                   + "\n".join(lines) + "\nreturn 0; }\n")
    exe = src.with_suffix("")
    subprocess.run(["gcc", "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in out.splitlines()}


def test_ioctl_numbers_match_the_header(header) -> None:
    assert {n: getattr(abi, n) for n in IOCTLS} == {n: header[n] for n in IOCTLS}


def test_constants_match_the_header(header) -> None:
    assert CONSTANTS and {n: getattr(abi, n) for n in CONSTANTS} == {n: header[n] for n in CONSTANTS}


def test_struct_layouts_match_the_header(header) -> None:
    for name in STRUCTS:
        assert ctypes.sizeof(getattr(abi, name)) == header[f"sizeof {name}"], name
    for struct, field in OFFSETS:
        cls = getattr(abi, struct)
        offset = cls.u.offset if field == "io" else getattr(cls, field).offset
        assert offset == header[f"offsetof {struct}.{field}"], (struct, field)


def test_every_ioctl_has_a_name() -> None:
    assert [abi.IOCTL_NAMES[getattr(abi, n)] for n in IOCTLS] == IOCTLS
    assert abi.EXIT_REASON_NAMES[abi.KVM_EXIT_SHUTDOWN] == "KVM_EXIT_SHUTDOWN"


# --------------------------------------------------------------------------- decoding kvm_run


@pytest.fixture
def page():
    """A kvm_run page with its data page, as KVM_RUN leaves them."""
    buf = bytearray(3 * 4096)
    return buf, abi.kvm_run.from_buffer(buf)


def test_decode_port_out(page) -> None:
    buf, run = page
    run.exit_reason = abi.KVM_EXIT_IO
    run.io.direction, run.io.size, run.io.port = abi.KVM_EXIT_IO_OUT, 2, 0x3F8
    run.io.count, run.io.data_offset = 1, 4096
    buf[4096:4098] = b"\x34\x12"
    e = exits.decode(run, buf)
    assert e == exits.IoExit(abi.KVM_EXIT_IO, "out", 0x3F8, 2, 1, b"\x34\x12")
    assert e.value == 0x1234 and e.name == "KVM_EXIT_IO" and "to port 0x3f8" in str(e)


def test_decode_port_in_has_no_data(page) -> None:
    buf, run = page
    run.exit_reason = abi.KVM_EXIT_IO
    run.io.direction, run.io.size, run.io.port, run.io.count, run.io.data_offset = abi.KVM_EXIT_IO_IN, 1, 0x3FD, 1, 4096
    e = exits.decode(run, buf)
    assert (e.direction, e.port, e.size, e.data) == ("in", 0x3FD, 1, b"")


def test_decode_mmio_write_and_read(page) -> None:
    buf, run = page
    run.exit_reason = abi.KVM_EXIT_MMIO
    run.mmio.phys_addr, run.mmio.len, run.mmio.is_write = 0x1000_0000, 4, 1
    run.mmio.data[:4] = [0x29, 0, 0, 0]
    assert exits.decode(run, buf) == exits.MmioExit(abi.KVM_EXIT_MMIO, 0x1000_0000, 4, True, b"\x29\0\0\0")
    run.mmio.is_write = 0
    e = exits.decode(run, buf)
    assert not e.is_write and e.data == b"" and "read 4 bytes from 0x10000000" in str(e)


def test_decode_fail_entry(page) -> None:
    buf, run = page
    run.exit_reason = abi.KVM_EXIT_FAIL_ENTRY
    run.fail_entry.hardware_entry_failure_reason, run.fail_entry.cpu = 0x21, 1
    e = exits.decode(run, buf)
    assert e == exits.FailEntryExit(abi.KVM_EXIT_FAIL_ENTRY, 0x21, 1) and "0x21" in str(e)


def test_decode_internal_error_with_suberror(page) -> None:
    buf, run = page
    run.exit_reason = abi.KVM_EXIT_INTERNAL_ERROR
    run.internal.suberror, run.internal.ndata = abi.KVM_INTERNAL_ERROR_EMULATION, 2
    run.internal.data[0], run.internal.data[1] = 7, 9
    e = exits.decode(run, buf)
    assert e == exits.InternalErrorExit(abi.KVM_EXIT_INTERNAL_ERROR, 1, (7, 9))
    assert e.suberror_name == "KVM_INTERNAL_ERROR_EMULATION"


@pytest.mark.parametrize("reason, cls", [(abi.KVM_EXIT_HLT, exits.HltExit), (abi.KVM_EXIT_SHUTDOWN, exits.ShutdownExit),
                                         (abi.KVM_EXIT_INTR, exits.InterruptedExit)])
def test_decode_simple_exits(page, reason, cls) -> None:
    buf, run = page
    run.exit_reason = reason
    assert type(exits.decode(run, buf)) is cls


def test_other_exits_are_reported_by_name(page) -> None:
    buf, run = page
    run.exit_reason = abi.KVM_EXIT_X86_RDMSR
    assert exits.decode(run, buf).name == "KVM_EXIT_X86_RDMSR"
    run.exit_reason = 200
    assert exits.decode(run, buf).name == "exit reason 200"


def test_the_run_loops_one_read_matches_the_structure(page) -> None:
    """Vcpu.serve reads exit_reason and kvm_run.io with one struct.unpack_from: same fields, same values."""
    from labkit.kvm.vcpu import EXIT_AND_IO

    buf, run = page
    run.exit_reason = abi.KVM_EXIT_IO
    run.io.direction, run.io.size, run.io.port, run.io.count, run.io.data_offset = 1, 4, 0xF4, 3, 4096
    assert EXIT_AND_IO.unpack_from(buf, abi.kvm_run.exit_reason.offset) == (abi.KVM_EXIT_IO, 1, 4, 0xF4, 3, 4096)
