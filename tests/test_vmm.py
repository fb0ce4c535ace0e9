"""labkit's VMM that boots Linux, piece by piece: the kernel loader, the zero page, the vCPU's entry state,
the UART, the RTC, the PC's bus, a VM built around the real kernel, and clear errors for bad input.
The boot itself runs inside the emulated AMD-V machine (tests/nested/test_own_vmm.py)."""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import HOSTS, needs_kvm
from labkit import cli, formats, host, images, runtime, vmm
from labkit.errors import InvalidOptionError, MissingKernelError
from labkit.kvm import modes
from labkit.kvm.memory import GuestMemory, MemorySlot
from labkit.kvm.system import CpuidEntry
from labkit.vmm import bootparam, cpu, kernel, zeropage
from labkit.vmm.bus import PcBus
from labkit.vmm.rtc import CmosRtc
from labkit.vmm.uart import Uart

TOP = Path(__file__).resolve().parent.parent
ROOT = host.User(0, frozenset({0}))


def cached_kernel() -> images.Kernel:
    return images.find_kernel(fetch=False, progress=False)


def bzimage(version: int, xloadflags: int, pref_address: int = 0x1000000, init_size: int = 0x2000000) -> bytes:
    """The first sectors of a bzImage as boot.rst lays them out: 1 setup sector, then the protected-mode part."""
    data = bytearray(0x800)
    data[0x1F1] = 1  # setup_sects
    data[0x201] = 0x6A  # the jump over the header: it ends at 0x26c
    struct.pack_into("<IH", data, 0x202, bootparam.HDRS_MAGIC, version)
    struct.pack_into("<I", data, 0x22C, 0x37FFFFFF)  # initrd_addr_max
    struct.pack_into("<H", data, 0x236, xloadflags)
    struct.pack_into("<I", data, 0x238, 2047)  # cmdline_size
    struct.pack_into("<QI", data, 0x258, pref_address, init_size)
    return bytes(data)


def guest_memory(size: int) -> GuestMemory:
    """Guest RAM without a VM: the loader writes to memory, KVM is not needed to check where."""
    memory = GuestMemory()
    memory.slots.append(MemorySlot(0, 0, size, False, mmap.mmap(-1, size)))
    return memory


# --------------------------------------------------------------------------- the kernel loader


def test_the_cached_vmlinux_is_entered_at_startup_64() -> None:
    found = cached_kernel()
    assert found.vmlinux is not None
    k = vmm.read_kernel(found.vmlinux)
    assert k.kind == "vmlinux" and k.header == b""
    assert k.entry == 0x1000000  # the physical address of startup_64 (CONFIG_PHYSICAL_START)
    assert k.loads and all(s.paddr >= 0x1000000 for s in k.loads) and k.end > k.entry


def test_the_cached_bzimage_has_a_64_bit_entry_past_its_setup() -> None:
    k = vmm.read_kernel(cached_kernel().path)
    hdr = kernel.setup_header_of(k.header)
    assert k.kind == "bzImage" and hdr.header == bootparam.HDRS_MAGIC and hdr.xloadflags & bootparam.XLF_KERNEL_64
    assert k.entry == hdr.pref_address + 0x200 and k.end == hdr.pref_address + hdr.init_size
    assert k.loads[0].offset == (hdr.setup_sects + 1) * 512


def test_an_elf_is_loaded_at_its_physical_addresses(tmp_path: Path) -> None:
    code = b"\xf4" * 16
    path = tmp_path / "tiny.elf"
    path.write_bytes(formats.static_elf(code, 0x200000 + formats.ELF_HEADERS))
    k = vmm.read_kernel(path)
    assert (k.kind, k.entry, k.end) == ("vmlinux", 0x200000 + formats.ELF_HEADERS,
                                        0x200000 + formats.ELF_HEADERS + len(code))
    memory = guest_memory(4 << 20)
    kernel.copy_into(k, memory)
    assert memory.read(k.entry, len(code)) == code and memory.read(0x200000, 4) == b"\x7fELF"


@pytest.mark.parametrize(("content", "error", "message"), ids=["text", "empty", "elf32", "protocol-2.11", "no-xlf64"],
                         argvalues=[
    (b"#!/bin/sh\necho not a kernel\n" * 40, vmm.NotAKernelError, "no ELF header and no bzImage"),
    (b"", vmm.NotAKernelError, "is empty"),
    (b"\x7fELF\x01\x01\x01" + bytes(60), vmm.No64BitEntryError, "32-bit ELF"),
    (bzimage(0x20B, 0), vmm.No64BitEntryError, "XLF_KERNEL_64 is not set"),
    (bzimage(0x20F, 0), vmm.No64BitEntryError, "without a 64-bit entry point"),
])
def test_files_that_are_not_64_bit_kernels_are_refused(tmp_path: Path, content: bytes, error: type,
                                                        message: str) -> None:
    path = tmp_path / "kernel"
    path.write_bytes(content)
    with pytest.raises(error, match=message) as err:
        vmm.read_kernel(path)
    assert err.value.fix


def test_an_elf_for_another_machine_or_without_a_loadable_entry_is_refused(tmp_path: Path) -> None:
    elf = bytearray(formats.static_elf(b"\xf4", 0x200000 + formats.ELF_HEADERS))
    arm = tmp_path / "arm"
    arm.write_bytes(elf[:0x12] + struct.pack("<H", 183) + elf[0x14:])  # EM_AARCH64
    with pytest.raises(vmm.No64BitEntryError, match="machine 183, not x86-64"):
        vmm.read_kernel(arm)
    lost = tmp_path / "lost"
    lost.write_bytes(elf[:0x18] + struct.pack("<Q", 0x900000) + elf[0x20:])  # e_entry outside the segment
    with pytest.raises(vmm.No64BitEntryError, match="entry point 0x900000 is in no loadable segment"):
        vmm.read_kernel(lost)


def test_missing_kernel_directory_device_and_pipe(tmp_path: Path) -> None:
    with pytest.raises(MissingKernelError, match="does not exist"):
        vmm.read_kernel(tmp_path / "nothing")
    os.mkfifo(tmp_path / "fifo")
    for path in (tmp_path, tmp_path / "fifo", Path("/dev/zero")):
        with pytest.raises(vmm.NotAKernelError, match="is not a regular file"):
            vmm.read_kernel(path)


# --------------------------------------------------------------------------- the zero page


def test_e820_map_is_a_pcs() -> None:
    ram = [(e.addr, e.end) for e in zeropage.e820_map(128 << 20) if e.type == bootparam.E820_TYPE_RAM]
    assert ram == [(0, 0x9FC00), (0x100000, 128 << 20)]
    reserved = [(e.addr, e.end) for e in zeropage.e820_map(128 << 20) if e.type == bootparam.E820_TYPE_RESERVED]
    assert reserved == [(0x9FC00, 0x100000)]


def test_too_little_or_too_much_memory_says_how_much_would_do() -> None:
    k = vmm.read_kernel(cached_kernel().vmlinux)
    least = zeropage.minimum_memory(k, 1 << 20)
    assert least % (1 << 20) == 0 and least >= k.end + (1 << 20) + zeropage.ROOM_TO_RUN
    zeropage.check_memory(least, k, 1 << 20)
    with pytest.raises(vmm.TooLittleMemoryError, match="too little") as err:
        zeropage.check_memory(least - (1 << 20), k, 1 << 20)
    assert f"--memory {least >> 20}" in (err.value.fix or "")
    with pytest.raises(vmm.TooLittleMemoryError, match="up to 3072 MiB"):
        zeropage.check_memory(4 << 30, k, 1 << 20)


def test_the_initramfs_goes_to_the_top_of_ram_below_the_kernels_limit(tmp_path: Path) -> None:
    k = vmm.read_kernel(cached_kernel().vmlinux)
    assert zeropage.initramfs_address(128 << 20, 5000, k) == (128 << 20) - 0x2000
    path = tmp_path / "bz"
    path.write_bytes(bzimage(0x20F, bootparam.XLF_KERNEL_64))
    bz = vmm.read_kernel(path)  # initrd_addr_max 0x37ffffff
    assert zeropage.initramfs_address(2 << 30, 0x1000, bz) == 0x38000000 - 0x1000
    with pytest.raises(vmm.TooLittleMemoryError, match="does not fit"):
        zeropage.initramfs_address(k.end + 0x1000, 0x2000, k)


def test_the_zero_page_at_the_offsets_boot_rst_gives() -> None:
    """Read back at boot.rst's raw offsets (not through the structure): what the kernel will find."""
    k = vmm.read_kernel(cached_kernel().vmlinux)
    e820 = zeropage.e820_map(256 << 20)
    page = bytes(zeropage.zero_page(k, 0x5000000, 123456, e820))
    assert len(page) == 4096 and page[0x202:0x206] == b"HdrS" and page[0x1FE:0x200] == b"\x55\xaa"
    assert page[0x210] == 0xFF  # type_of_loader: undefined
    assert page[0x211] & bootparam.LOADED_HIGH
    assert struct.unpack_from("<III", page, 0x218) == (0x5000000, 123456, 0)  # ramdisk image, size, kludge
    assert struct.unpack_from("<I", page, 0x228)[0] == zeropage.CMDLINE
    assert page[0x1E8] == 3 and struct.unpack_from("<QQI", page, 0x2D0 + 2 * 20) == (0x100000, (256 << 20)
                                                                                     - 0x100000, 1)


def test_a_bzimages_own_setup_header_is_kept_in_the_zero_page(tmp_path: Path) -> None:
    path = tmp_path / "bz"
    path.write_bytes(bzimage(0x20F, bootparam.XLF_KERNEL_64))
    page = zeropage.zero_page(vmm.read_kernel(path), 0x4000000, 10, zeropage.e820_map(128 << 20))
    assert page.hdr.version == 0x20F and page.hdr.cmdline_size == 2047 and page.hdr.pref_address == 0x1000000
    assert page.hdr.type_of_loader == 0xFF and page.hdr.ramdisk_image == 0x4000000
    assert zeropage.cmdline_limit(vmm.read_kernel(path)) == 2047


# --------------------------------------------------------------------------- the vCPU


def test_cpuid_tells_the_kernel_it_runs_under_a_hypervisor() -> None:
    leaves = (CpuidEntry(0, 0, 0, 0xD, 1, 2, 3), CpuidEntry(1, 0, 0, 0x806F8, 0x07000800, 0x7FFAFBFF, 0xBFEBFBFF))
    guest = cpu.guest_cpuid(leaves, apic_id=2)
    assert guest[0] == leaves[0]
    assert guest[1].ecx == 0x7FFAFBFF | 1 << 31 and guest[1].ebx == 0x02000800 and guest[1].edx == leaves[1].edx


def test_the_gdt_has_boot_rst_s_flat_code_and_data() -> None:
    code, data = modes.segment(cpu.BOOT_CS, cpu.GDT[cpu.BOOT_CS]), modes.segment(cpu.BOOT_DS, cpu.GDT[cpu.BOOT_DS])
    assert (code.selector, code.l, code.db, code.type & 0xA, code.dpl, code.base) == (0x10, 1, 0, 0xA, 0, 0)
    assert (data.selector, data.type, data.db, data.limit) == (0x18, 3, 1, 0xFFFFFFFF)


# --------------------------------------------------------------------------- devices


def test_uart_passes_the_8250_drivers_probe() -> None:
    """What serial8250's autoconfig does: IER read back, scratch, loopback in MSR, the FIFO in IIR, the divisor."""
    uart = Uart(lambda: None)
    put, get = (lambda reg, v: uart.out(0x3F8 + reg, bytes((v,)))), (lambda reg: uart.port_in(0x3F8 + reg, 1)[0])
    put(1, 0x00)
    assert get(1) == 0
    put(1, 0x0F)
    assert get(1) == 0x0F
    put(1, 0)
    put(7, 0xA5)
    assert get(7) == 0xA5
    put(4, 0x10 | 0x0A)  # loopback, RTS and OUT2
    assert get(6) & 0xF0 == 0x90  # CTS and DCD
    put(4, 0)
    put(2, 0x01)  # FIFO on
    assert get(2) >> 6 == 3  # a 16550A
    put(3, 0x80)  # DLAB
    put(0, 0x01)
    put(1, 0x00)
    assert (get(0), get(1)) == (1, 0)
    put(3, 0x03)
    assert get(5) == 0x60 and uart.output == b""


def test_uart_interrupts_when_its_transmitter_empties_with_thri_on() -> None:
    raised = []
    uart = Uart(lambda: raised.append(1), on_output=None)
    uart.out(0x3F8, b"a")
    assert raised == [] and uart.port_in(0x3FA, 1) == b"\x01"  # THRI off: no interrupt, IIR "none pending"
    uart.out(0x3F9, b"\x02")  # THRI on, the transmitter is empty: it interrupts at once
    assert len(raised) == 1
    assert uart.port_in(0x3FA, 1) == b"\x02" and uart.port_in(0x3FA, 1) == b"\x01"  # reading IIR clears it
    uart.out(0x3F8, b"b")
    assert len(raised) == 2 and uart.interrupts == 2 and uart.text == "ab"


def test_uart_says_when_a_line_ended() -> None:
    seen: list[str] = []
    uart = Uart(lambda: None, on_output=seen.append)
    before = time.perf_counter()
    for byte in b"boot\nLABKIT-REPORT x {}\nmore":
        uart.out(0x3F8, bytes((byte,)))
    at = uart.time_of(b"LABKIT-REPORT x")
    assert at is not None and before <= at <= time.perf_counter()
    assert uart.time_of(b"more") is None and uart.time_of(b"absent") is None and "".join(seen) == uart.text


def test_rtc_answers_the_time_in_bcd_and_is_never_updating() -> None:
    rtc = CmosRtc(clock=lambda: time.struct_time((2026, 12, 7, 13, 59, 42, 0, 341, 0)))
    read = lambda index: (rtc.out(0x70, bytes((index,))), rtc.port_in(0x71, 1)[0])[1]  # noqa: E731
    assert [read(i) for i in (0, 2, 4, 6, 7, 8, 9, 0x32)] == [0x42, 0x59, 0x13, 2, 0x07, 0x12, 0x26, 0x20]
    assert read(0x0A) & 0x80 == 0 and read(0x0B) == 0x02 and read(0x0D) == 0x80
    assert read(0x80 | 0x04) == 0x13  # bit 7 of the index masks NMIs; it is not part of it
    rtc.out(0x70, b"\x40")
    rtc.out(0x71, b"\x5a")
    assert read(0x40) == 0x5A


def test_pc_bus_unclaimed_ports_float_to_all_ones() -> None:
    uart = Uart(lambda: None)
    bus = PcBus(uart)
    assert bus.port_in(0x64, 1) == b"\xff" and bus.port_in(0x2F8, 2, count=3) == b"\xff" * 6
    bus.out(0x80, b"\x00")
    assert bus.mmio_read(0xFED00000, 4) == b"\xff" * 4
    assert dict(bus.unclaimed) == {"port 0x64": 1, "port 0x2f8": 1, "port 0x80": 1, "mmio 0xfed00000": 1}
    bus.out(0x3F8, b"x")
    assert uart.text == "x" and bus.port_in(0x3FD, 1) == b"\x60"


# --------------------------------------------------------------------------- a VM around the real kernel


def vm_flags(address: int) -> list[str]:
    """The kernel's VmFlags of this process's mapping that holds ``address`` (/proc/self/smaps)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif inside and head == "VmFlags:":
            return line.split()[1:]
    return []


@needs_kvm
def test_a_vm_is_built_around_the_real_kernel_ready_at_its_64_bit_entry() -> None:
    """Everything but KVM_RUN, on this host's /dev/kvm: irqchip, PIT, RAM, kernel, initramfs, zero page, vCPU."""
    found = cached_kernel()
    k = vmm.read_kernel(found.vmlinux)
    initrd = b"\x1f\x8b" + bytes(5000)
    with vmm.LinuxVm(k, initrd, "console=ttyS0 reboot=t", 128 << 20) as vm:
        memory = vm.vm.memory
        regs, special = vm.vcpu.get_regs(), vm.vcpu.special()
        assert (regs.rip, regs.rsi) == (k.entry, zeropage.ZERO_PAGE)
        assert special.describe() == "64-bit long mode, ring 0, paging on" and special.cs.selector == cpu.BOOT_CS
        assert vm.vcpu.translate(k.entry) == k.entry  # identity-mapped
        with open(found.vmlinux, "rb") as f:
            f.seek(k.loads[0].offset)
            assert memory.read(k.loads[0].paddr, 4096) == f.read(4096)
        page = bootparam.boot_params.from_buffer_copy(memory.read(zeropage.ZERO_PAGE, 4096))
        assert memory.read(page.hdr.ramdisk_image, page.hdr.ramdisk_size) == initrd
        assert page.hdr.ramdisk_image == (128 << 20) - 0x2000  # 5002 bytes: the top two pages
        assert memory.read(page.hdr.cmd_line_ptr, 24) == b"console=ttyS0 reboot=t\0\0"
        assert "hg" in vm_flags(memory.slots[0].userspace_addr)  # MADV_HUGEPAGE: 2 MiB pages where the host has them
    assert vm.vm.closed and vm.vcpu.closed


def tiny_kernel(tmp_path: Path, code: bytes) -> vmm.LinuxKernel:
    """A "kernel" of a few instructions, entered like Linux's 64-bit entry (an ELF at 2 MiB)."""
    path = tmp_path / "tiny-kernel"
    path.write_bytes(formats.static_elf(code, 0x200000 + formats.ELF_HEADERS))
    return vmm.read_kernel(path)


@needs_kvm
def test_the_loop_serves_the_uart_until_the_guests_triple_fault(tmp_path: Path) -> None:
    """What reboot=t does to Linux, in three instructions: ud2 with no IDT is a triple fault, KVM_EXIT_SHUTDOWN."""
    code = bytes.fromhex("66baf803" "b068" "ee" "b069" "ee" "0f0b")  # mov dx,0x3f8; 'h' and 'i' out; ud2
    with vmm.LinuxVm(tiny_kernel(tmp_path, code), b"initrd", "", 64 << 20) as vm:
        end = vm.run(timeout=60)
    assert end.name == "KVM_EXIT_SHUTDOWN" and vm.uart.text == "hi"
    assert vm.exits == {"KVM_EXIT_IO": 2, "KVM_EXIT_SHUTDOWN": 1}


@needs_kvm
def test_a_guest_that_never_resets_is_stopped_with_the_evidence(tmp_path: Path) -> None:
    k = tiny_kernel(tmp_path, b"\xeb\xfe")  # jmp . (in ring 0: no exit, ever)
    with vmm.LinuxVm(k, b"initrd", "", 64 << 20) as vm, pytest.raises(vmm.LinuxBootError) as err:
        vm.run(timeout=0.5)
    assert f"did not reset itself within 0.5 s (labkit stopped it at rip {k.entry:#x})" in err.value.what
    assert "the console is empty" in err.value.what and err.value.fix


def test_a_command_line_longer_than_the_kernel_takes_is_refused() -> None:
    k = vmm.read_kernel(cached_kernel().vmlinux)
    with pytest.raises(InvalidOptionError, match="takes at most 2047"):
        vmm.LinuxVm(k, b"", "x" * 3000, 128 << 20)


# --------------------------------------------------------------------------- the host and bad input


def test_only_a_host_whose_kvm_boots_linux_is_accepted() -> None:
    vmm.require_kvm_for_linux(host.inspect(HOSTS / "amd-svm-baremetal", user=ROOT))
    with pytest.raises(vmm.NeedsHardwareKvmError, match="cannot run a Linux kernel") as err:
        vmm.require_kvm_for_linux(host.inspect(HOSTS / "pvm-nested", user=ROOT))
    assert err.value.fix and err.value.fix.endswith("labkit nested run -- labkit kvm linux")


@pytest.mark.parametrize(("options", "message"), [
    ({"vcpus": 2}, "boots one vCPU"), ({"memory_mib": 0}, "above 0"), ({"memory_mib": 16}, "too little"),
    ({"timeout": 0}, "above 0"),
])
def test_bad_options_are_refused_before_the_host_is_asked(options: dict, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        vmm.boot(**options)


def test_cli_bad_kernel_and_memory_are_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "notes.txt").write_text("not a kernel\n" * 100)
    for args, message in [(["--kernel", str(tmp_path / "notes.txt")], "is not a Linux kernel"),
                          (["--kernel", str(tmp_path / "none")], "does not exist"),
                          (["--memory", "32"], "too little"), (["--vcpus", "2"], "boots one vCPU")]:
        assert cli.main(["kvm", "linux", *args]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("labkit: error: ") and message in err and "\n  fix: " in err, err


@pytest.mark.skipif(host.inspect().verdict.boots_linux, reason="this host's KVM boots Linux (tests/nested covers "
                    "the boot); CI's PVM hosts take this test")
def test_cli_on_a_host_whose_kvm_cannot_boot_linux_names_the_nested_fix(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["kvm", "linux", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("labkit: error: this host's KVM cannot run a Linux kernel"), err
    assert "fix: run it inside the emulated AMD-V machine" in err and "labkit nested run -- labkit kvm linux" in err


# --------------------------------------------------------------------------- a killed owner


def vcpu_fds(pid: int) -> list[str]:
    fds = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            fds.append(os.readlink(fd))
    return [target for target in fds if "kvm-vcpu" in target]


@needs_kvm
def test_nothing_outlives_a_killed_vmm() -> None:
    """The VMM is this process (no child), its scratch copy of the initramfs is gone before the guest runs: a
    SIGKILL mid-boot leaves nothing for `labkit cleanup` (the kernel frees the VM's fds and memory with it)."""
    script = ("from labkit import vmm; "  # the guest sleeps: it is still running, on any host, when it is killed
              "vmm.boot(command='sleep 600', timeout=600, check_host=False)")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=TOP, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not vcpu_fds(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        assert psutil.Process(proc.pid).children(recursive=True) == []
        assert not list(runtime.run_dir_of().glob(f"*-{proc.pid}-*"))
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not list(runtime.run_dir_of().glob(f"*-{proc.pid}-*"))
