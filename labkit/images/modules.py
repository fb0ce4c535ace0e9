"""Device drivers for the tiny guest: kernel modules from its kernel's own package, put in its initramfs.

The Debian cloud kernel builds its disk and network drivers as modules
(``virtio_blk``, ``virtio_net``, ``ata_piix`` …) and a module loads only into
the kernel it was built with: so they come from the very ``.deb`` the cached
kernel came from (``apt-get download`` of the package and version in its
``kernel.json``), with every module they depend on (the ``depends=`` line
each ``.ko`` carries in its ``.modinfo`` section), cached next to the kernel
in ``<cache>/kernels/<sha16>/modules/``.  :func:`with_drivers` appends them
to an initramfs as ``/lib/modules/NN-name.ko``, numbered in load order, and
the guest's command loads them with ``insmod``.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path

from labkit import formats, runtime
from labkit.errors import MissingToolError
from labkit.images import cache as imagecache
from labkit.images.errors import ImageError
from labkit.images.guest import GuestImage
from labkit.images.guest_kernel import Kernel, find_kernel
from labkit.images.initramfs import build_initramfs

#: Every driver the lab's lessons give the tiny guest (labkit.qemu.disk, labkit.qemu.net): setup fetches them.
LAB_DRIVERS = ("virtio_blk", "virtio_pci", "ata_piix", "sd_mod", "virtio_net", "vmxnet3")

#: The guest's shell line that loads every module of :func:`with_drivers`, in order.
INSMOD_ALL = "for m in /lib/modules/*.ko; do insmod $m || echo \"insmod $m failed\"; done"


def module_depends(ko: bytes) -> tuple[str, ...]:
    """The modules a ``.ko`` needs loaded first: its ``.modinfo`` section's ``depends=`` (ELF64)."""
    if ko[:4] != b"\x7fELF" or ko[4] != 2:
        raise ImageError("not an ELF64 kernel module", "the module came from a damaged package: fetch it again")
    shoff, = struct.unpack_from("<Q", ko, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ko, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _, _, _, offset, size = struct.unpack_from("<IIQQQQ", ko, shoff + i * shentsize)
        return name, offset, size

    _, names_at, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        if ko[names_at + name:ko.index(b"\0", names_at + name)] == b".modinfo":
            for field in ko[offset:offset + size].split(b"\0"):
                if field.startswith(b"depends="):
                    return tuple(d for d in field[8:].decode().split(",") if d)
    return ()


def _package(kernel: Kernel) -> dict:
    try:
        meta = json.loads((kernel.path.parent / "kernel.json").read_text())
        return {key: meta[key] for key in ("package", "version", "release")}
    except (OSError, ValueError, KeyError):
        raise ImageError(f"the kernel {kernel.path} ({kernel.source}) is not one labkit fetched from a package: "
                         "its disk and network drivers are modules that must come from that package",
                         "unset LABKIT_KERNEL and run `labkit image build`") from None


def _folder(cache: Path, kernel: Kernel) -> Path:
    return cache / "kernels" / kernel.sha256[:16] / "modules"


def guest_modules(kernel: Kernel, names: tuple[str, ...]) -> list[Path]:
    """``names`` and every module they need, in an order ``insmod`` accepts (dependencies first)."""
    for cache in [imagecache.user_cache(), *imagecache.shared_caches()]:
        order = _load_order(_folder(cache, kernel), names)
        if order is not None:
            return order
    _fetch(kernel, names)
    order = _load_order(_folder(imagecache.user_cache(), kernel), names)
    if order is None:
        raise ImageError(f"{_package(kernel)['package']} lacks some of {', '.join(names)}",
                         "use Debian's linux-image-cloud-amd64 (`labkit image build --refresh`)")
    return order


def prepare() -> list[Path]:
    """Fetch :data:`LAB_DRIVERS` for the cached kernel now (setup), so no lesson downloads anything."""
    return guest_modules(find_kernel(fetch=False), LAB_DRIVERS)


def _load_order(folder: Path, names: tuple[str, ...]) -> list[Path] | None:
    """Dependencies before dependants, or None if a module is not in ``folder``."""
    order: list[Path] = []

    def visit(name: str) -> bool:
        path = folder / f"{name}.ko"
        if path in order:
            return True
        if not path.is_file():
            return False
        if not all(visit(dep) for dep in module_depends(imagecache.verified(path).read_bytes())):
            return False
        order.append(path)
        return True

    return order if all(visit(name) for name in names) else None


def _fetch(kernel: Kernel, names: tuple[str, ...]) -> None:
    """Download the kernel's package once and cache ``names`` with all their dependencies."""
    info = _package(kernel)
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise MissingToolError(f"{tool} is not available: the guest's drivers come from a Debian package",
                                   "run labkit on the Debian/Ubuntu host the lab is set up for")
    folder = _folder(imagecache.user_cache(), kernel)
    with runtime.scratch("modules") as tmp:
        deb = download_package(f"{info['package']}={info['version']}", tmp)
        wanted, found = set(names), dict[str, bytes]()
        while wanted - found.keys():  # each pass adds the dependencies the last one revealed
            before = len(found)
            found.update(unpack_modules(deb, info["release"], wanted - found.keys()))
            if len(found) == before:
                break
            for ko in list(found.values()):
                wanted.update(module_depends(ko))
    for name, data in found.items():
        imagecache.publish(data, folder / f"{name}.ko")


def download_package(spec: str, folder: Path) -> Path:
    """``apt-get download SPEC`` into ``folder`` (as any user, nothing installed); the ``.deb``."""
    proc = subprocess.run(["apt-get", "download", "-q", spec], cwd=folder, capture_output=True, text=True,
                          check=False)
    debs = sorted(folder.glob("*.deb"))
    if proc.returncode != 0 or not debs:
        detail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
        raise ImageError(f"`apt-get download {spec}` failed ({detail}): kernel modules must come from the same "
                         "package as the cached kernel",
                         "sudo apt-get update; if the archive dropped that version, fetch the current kernel with "
                         "`labkit image build --refresh`")
    return debs[0]


def unpack_modules(deb: Path, release: str, names: set[str]) -> dict[str, bytes]:
    """The ``.ko`` files called ``names`` in a kernel ``.deb``, streamed through ``dpkg-deb``."""
    pattern = re.compile(rf"\./(?:usr/)?lib/modules/{re.escape(release)}/kernel/.*/(?P<name>[^/]+)\.ko")
    found: dict[str, bytes] = {}
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    match = pattern.fullmatch(member.name)
                    if match and match["name"] in names and member.isfile():
                        found[match["name"]] = tar.extractfile(member).read()  # type: ignore[union-attr]
        finally:
            proc.stdout.close()
            proc.kill()
            proc.wait()
    return found


def with_drivers(initrd: Path, modules: list[Path], into: Path) -> Path:
    """A copy of ``initrd`` in folder ``into`` with ``modules`` appended as ``/lib/modules/NN-name.ko``."""
    entries = [("lib", 0o040755, b""), ("lib/modules", 0o040755, b"")]
    entries += [(f"lib/modules/{i:02d}-{ko.name}", 0o100644, ko.read_bytes()) for i, ko in enumerate(modules)]
    out = into / f"drivers-{initrd.name}"
    out.write_bytes(initrd.read_bytes() + gzip.compress(formats.cpio(entries), compresslevel=1, mtime=0))
    return out


def with_device(image: GuestImage, modules: tuple[str, ...], ready: str, command: str, into: Path) -> GuestImage:
    """``image`` whose /init loads ``modules`` (and what they need), waits until the shell test ``ready``
    holds (the device appeared, e.g. ``-b /dev/vda``; at most 10 s), then runs ``command``."""
    drivers = guest_modules(find_kernel(image.kernel, fetch=False), modules)
    script = (f"{INSMOD_ALL} >/dev/null; i=0; while ! [ {ready} ] && [ $i -lt 200 ]; do sleep 0.05; "
              f"i=$((i+1)); done; {command}")
    return replace(image, initrd=with_drivers(build_initramfs(script), drivers, into), command=script)
