"""A disk for the tiny guest: a virtio-blk or an emulated IDE disk on a host file, and the I/O measured.

Two ways to give a guest a disk, on the same ``pc`` machine and the same
image file:

* **IDE** (``ide-hd`` on the PIIX controller every ``pc`` has): QEMU
  emulates a real 1990s disk controller, register by register.  The guest's
  ordinary driver (``ata_piix``) programs it as it would real hardware: each
  request is several port and memory accesses QEMU must trap and emulate.
* **virtio-blk** (``virtio-blk-pci``): a *paravirtual* device, designed for
  VMs.  The guest's ``virtio_blk`` driver knows it is virtual: it puts
  requests in a ring in shared memory and notifies QEMU once per batch.

The guest's drivers are modules of its kernel (:mod:`labkit.images.modules`);
its command loads them, waits for the disk's device node and runs the I/O,
timing it with its own clock.  A killed run leaves nothing: QEMU dies with
its owner and the disk files live in a scratch dir (:class:`Workspace`).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from labkit import images, runtime
from labkit.errors import InvalidOptionError
from labkit.images import disk as imgdisk
from labkit.images.modules import with_device
from labkit.qemu.accel import Accel
from labkit.qemu.boots import BootResult, boot

Interface = Literal["virtio", "ide"]

#: Per interface: the QEMU device, the guest's first disk, the modules its driver needs.
INTERFACES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "virtio": ("virtio-blk-pci", "/dev/vda", ("virtio_blk", "virtio_pci")),
    "ide": ("ide-hd,bus=ide.0", "/dev/sda", ("ata_piix", "sd_mod")),
}

#: The machine both interfaces run on: the classic PC has PCI (virtio-blk-pci) and a PIIX IDE controller.
MACHINE = "pc"

#: Interrupt lines of the disk's driver in the guest's /proc/interrupts.
_DISK_IRQ = r"virtio[0-9]*-req|ata_piix"


def drive_args(path: Path, interface: Interface, fmt: str = "qcow2", index: int = 0) -> tuple[str, ...]:
    """QEMU options that attach the image ``path`` to the guest through ``interface``."""
    if interface not in INTERFACES:
        raise InvalidOptionError(f"interface={interface!r}: one of {', '.join(INTERFACES)}",
                                 "virtio for the paravirtual disk, ide for the emulated one")
    device = INTERFACES[interface][0]
    return ("-drive", f"file={path},format={fmt},if=none,id=disk{index}",
            "-device", f"{device},drive=disk{index}")


def guest_device(interface: Interface) -> str:
    """The guest's block device for the first disk on ``interface`` (``/dev/vda``, ``/dev/sda``)."""
    return INTERFACES[interface][1]


async def boot_with_disk(image: images.GuestImage, path: Path, command: str, *, interface: Interface = "virtio",
                         fmt: str = "qcow2", accel: Accel = "auto", memory_mib: int = 128,
                         timeout: float = 120.0) -> BootResult:
    """Boot the tiny guest with ``path`` as its disk on ``interface`` and run ``command`` on it."""
    path = imgdisk.require_image(path)
    if fmt == "qcow2":
        imgdisk.require_qcow2(path)
    imgdisk.chain(path)  # a backing file that is gone fails here, in one sentence
    with runtime.scratch("disk-initrd") as folder:
        dev = guest_device(interface)
        ready = with_device(image, INTERFACES[interface][2], f"-b {dev}", command.replace("{dev}", dev), folder)
        return await boot(ready, accel=accel, machine=MACHINE, memory_mib=memory_mib, timeout=timeout,
                          extra_args=drive_args(path, interface, fmt))


# --------------------------------------------------------------------------- measuring I/O


def io_command(mib: int, block_kib: int = 64) -> str:
    """Write ``mib`` MiB to ``{dev}`` and read them back, bypassing the guest's cache; print times and IRQs."""
    count = mib * 1024 // block_kib
    irqs = (f"awk '/{_DISK_IRQ}/ {{ for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) t += $i }} "
            "END { print t + 0 }' /proc/interrupts")
    return (f"read a _ </proc/uptime; i0=$({irqs}); "
            f"dd if=/dev/zero of={{dev}} bs={block_kib}k count={count} oflag=direct 2>/dev/null; "
            f"read b _ </proc/uptime; i1=$({irqs}); "
            f"dd if={{dev}} of=/dev/null bs={block_kib}k count={count} iflag=direct 2>/dev/null; "
            f"read c _ </proc/uptime; i2=$({irqs}); echo \"LABKIT-DISKIO $a $b $c $i0 $i1 $i2\"")


@dataclass(frozen=True)
class DiskIo:
    """One guest's writes and reads of the same ``mib`` MiB, timed by the guest's clock (10 ms steps)."""

    interface: str
    mib: int
    write_s: float
    read_s: float
    write_irqs: int  # the disk's interrupts the guest took while writing: one per completed batch
    read_irqs: int

    @property
    def write_mib_s(self) -> float:
        return self.mib / max(self.write_s, 0.01)

    @property
    def read_mib_s(self) -> float:
        return self.mib / max(self.read_s, 0.01)


def parse_io(result: BootResult, interface: str, mib: int) -> DiskIo:
    """The :class:`DiskIo` a guest running :func:`io_command` printed; an error if it printed none."""
    match = re.search(r"LABKIT-DISKIO ([\d.]+) ([\d.]+) ([\d.]+) (\d+) (\d+) (\d+)",
                      result.report.command_output or "")
    if match is None:
        raise InvalidOptionError(f"the guest printed no I/O timings on its {interface} disk. It said:\n"
                                 f"{(result.report.command_output or '')[-600:]}",
                                 "is the disk's driver in the guest kernel? (labkit.images.modules)")
    a, b, c, i0, i1, i2 = (float(g) for g in match.groups())
    return DiskIo(interface, mib, b - a, c - b, int(i1 - i0), int(i2 - i1))


async def measure_io(image: images.GuestImage, base: Path, interface: Interface, mib: int = 16,
                     **options: object) -> DiskIo:
    """Write and read ``mib`` MiB on a fresh overlay of ``base`` through ``interface``; the guest's timings."""
    with runtime.scratch("disk-io") as folder:
        overlay = folder / "io.qcow2"
        imgdisk.create_overlay(base, overlay)
        result = await boot_with_disk(image, overlay, io_command(mib), interface=interface,
                                      **options)  # type: ignore[arg-type]
        return parse_io(result, interface, mib)


class Workspace:
    """A private scratch folder for a lesson's disks: removed on ``close``, on error and at interpreter exit.

    ``labkit cleanup`` finds one whose owner was killed by its name
    (``disk-<pid>-…`` under the run dir).
    """

    def __init__(self) -> None:
        self.path = runtime.scratch_dir("disk")
        self._token: int | None = runtime.release_at_exit(self.close)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._token is not None:
            runtime.forget(self._token)
            self._token = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scattered_writes_command(writes: int, kib: int = 4, spacing_mib: int = 1) -> str:
    """Write ``kib`` KiB of random bytes at the start of each of ``writes`` MiB ``spacing_mib`` apart on ``{dev}``."""
    if isinstance(writes, bool) or not isinstance(writes, int) or not 1 <= writes <= 64:
        raise InvalidOptionError(f"writes={writes!r}: 1 to 64 writes", "e.g. 16")
    step = spacing_mib * 1024 // kib
    return (f"i=0; while [ $i -lt {writes} ]; do dd if=/dev/urandom of={{dev}} bs={kib}k count=1 "
            f"seek=$((i * {step})) oflag=direct 2>/dev/null || echo 'write failed'; i=$((i + 1)); done; sync")


@dataclass(frozen=True)
class Growth:
    """How much a fresh overlay grew when the guest wrote ``writes`` times 4 KiB, each into another MiB."""

    writes: int
    cluster_size: int  # qcow2's unit of allocation, in bytes
    grown: int  # bytes the overlay file grew by


async def measure_growth(image: images.GuestImage, writes: int, accel: Accel = "auto") -> Growth:
    """Boot the guest on a fresh overlay, let it make ``writes`` scattered 4 KiB writes, measure the file."""
    command = scattered_writes_command(writes)
    with Workspace() as ws:
        base = imgdisk.create_base(ws.path / "base.raw", writes + 1)
        overlay = ws.path / "overlay.qcow2"
        cluster = imgdisk.create_overlay(base, overlay).cluster_size or 0
        before = imgdisk.file_size(overlay)
        await boot_with_disk(image, overlay, command, accel=accel)
        return Growth(writes, cluster, imgdisk.file_size(overlay) - before)
