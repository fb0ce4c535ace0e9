"""The tiny guest ready to boot (kernel + initramfs + command line), and what is cached of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labkit.images import cache as imagecache
from labkit.images.cache import CorruptCacheError, check_into, verified
from labkit.images.guest_kernel import _cached_kernels, find_kernel
from labkit.images.initramfs import build_initramfs

#: Kernel command line of the tiny guest, each option for a reason.  It holds
#: nothing machine-specific: QEMU and libvirt append what depends on the host
#: (e.g. ``tsc_early_khz``, see :mod:`labkit.qemu`).  Measured under TCG
#: (bench/boot.py, QEMU CPU time per boot): ``cryptomgr.notests`` saves ~0.3 s;
#: ``noreplace-smp`` ~0.1 s of a 1-vCPU boot.  Other usual "fast boot" options
#: (mitigations=off, init_on_alloc=0, lsm=capability, tsc=reliable, no_timer_check,
#: initcall_blacklist of the slowest initcalls, 8250.nr_uarts=1, i8042.*) each
#: changed it by under 3 %, so they are not here.
BASE_CMDLINE = " ".join((
    "console=ttyS0",        # the first serial port is the console labkit reads
    "quiet",                # every byte to an emulated UART costs time; errors still print
    "panic=-1",             # a panic reboots at once (QEMU -no-reboot: exits) instead of hanging
    "cryptomgr.notests",    # skip the crypto self-tests (~0.3 s under TCG)
    "nokaslr",              # stable kernel addresses, so register dumps read the same each boot
    # A kernel built for SMP that finds one CPU rewrites every LOCK prefix of its code into a NOP;
    # under TCG each rewrite throws away translated code (~0.1 s per boot).  The prefixes are harmless
    # on one CPU, and a guest with more vCPUs never does this rewrite anyway.
    "noreplace-smp",
))



@dataclass(frozen=True)
class GuestImage:
    """What a VMM needs to boot the tiny guest: ``-kernel``, ``-initrd``, ``-append``.

    ``kernel`` (a bzImage) boots under every x86 machine type (``pc``, ``q35``,
    ``microvm``) and under libvirt.  ``vmlinux`` is the same kernel already
    decompressed: QEMU starts it through its PVH entry point, which skips the
    firmware's kernel loader and the in-guest decompression (faster under TCG).
    """

    kernel: Path
    initrd: Path
    cmdline: str
    kernel_release: str
    kernel_source: str
    vmlinux: Path | None = None
    command: str | None = None

    def to_dict(self) -> dict:
        return {"kernel": str(self.kernel), "initrd": str(self.initrd), "cmdline": self.cmdline,
                "kernel_release": self.kernel_release, "kernel_source": self.kernel_source,
                "vmlinux": str(self.vmlinux) if self.vmlinux else None, "command": self.command}


def tiny_guest(kernel: Path | str | None = None, command: str | None = None, *, fetch: bool = True,
               refresh: bool = False, rebuild: bool = False, into: Path | None = None,
               progress: bool = True) -> GuestImage:
    """The tiny guest, ready to boot: kernel (see :func:`find_kernel`) + initramfs + command line.

    ``command`` is a shell command the guest runs after its report (its output
    comes back in :attr:`GuestReport.command_output`).  Nothing is downloaded
    unless no kernel is found and ``fetch`` is true.
    """
    if into is not None:
        into = check_into(into)
    try:
        found = find_kernel(kernel, fetch=fetch, refresh=refresh, into=into, progress=progress)
    except CorruptCacheError as exc:
        if not rebuild or (imagecache.is_shared(exc.path) and into is None):
            raise
        imagecache.drop(exc.path.parent if exc.path.parent.parent.name == "kernels" and exc.path.name == "vmlinuz"
              else exc.path)  # a damaged package kernel is fetched again, a damaged vmlinux re-extracted
        found = find_kernel(kernel, fetch=fetch, refresh=refresh, into=into, progress=progress)
    initrd = build_initramfs(command, rebuild=rebuild, into=into)
    return GuestImage(found.path, initrd, BASE_CMDLINE, found.release, found.source, found.vmlinux, command)


@dataclass(frozen=True)
class CachedFile:
    path: Path
    kind: str  # "kernel", "vmlinux", "initramfs"
    size: int
    detail: str
    damaged: str | None = None  # why its content does not match its stored hash (labkit image build --force)


def _check(path: Path, sha256: str | None = None) -> str | None:
    """Why a cached file fails :func:`verified` (None if it passes, or has no hash: stored by an older labkit)."""
    if sha256 is None and not imagecache.sum_file(path).is_file():
        return None
    try:
        verified(path, sha256)
    except CorruptCacheError as exc:
        return exc.what
    return None


def cache_info() -> list[CachedFile]:
    """Every kernel and initramfs in the user's and the shared caches, each checked against its hash."""
    files = []
    for cache in imagecache.caches(None):
        for folder, info in _cached_kernels([cache]):
            files.append(CachedFile(folder / "vmlinuz", "kernel", (folder / "vmlinuz").stat().st_size,
                                    f"{info['release']} from {info['source']}",
                                    _check(folder / "vmlinuz", info.get("sha256"))))
        for vmlinux in sorted((cache / "kernels").glob("*/vmlinux")):
            files.append(CachedFile(vmlinux, "vmlinux", vmlinux.stat().st_size, "uncompressed kernel (PVH entry)",
                                    _check(vmlinux)))
        for initrd in sorted((cache / "initramfs").glob("tiny-*.cpio.gz")):
            files.append(CachedFile(initrd, "initramfs", initrd.stat().st_size,
                                    "with a command" if "-cmd-" in initrd.name else "busybox + /init",
                                    _check(initrd)))
    return files
