"""The kernel modules L1 needs, taken from the very package the lab's guest kernel came from.

The Debian cloud kernel builds KVM, virtio and the file systems as modules,
and a module loads only into the kernel it was built with: so they come from
the same ``.deb`` as the cached ``vmlinuz`` (``apt-get download`` of the
package and version recorded in its ``kernel.json``), unpacked once and
cached next to the kernel: ``<cache>/kernels/<sha16>/modules/<name>.ko``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from labkit import images, runtime
from labkit.errors import MissingToolError
from labkit.images.modules import download_package, unpack_modules
from labkit.nested.errors import NestedError

#: In the order /nested-init loads them (each needs those before it); kvm-amd last, with nested=1.
MODULES = ("irqbypass", "kvm", "virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
           "virtio_pci", "fuse", "virtiofs", "overlay", "kvm-amd")


def package_of(kernel: images.Kernel) -> dict:
    """The ``kernel.json`` of a cached package kernel: which package and version it came from."""
    meta = kernel.path.parent / "kernel.json"
    try:
        info = json.loads(meta.read_text())
        return {"package": info["package"], "version": info["version"], "release": info["release"]}
    except (OSError, ValueError, KeyError):
        raise NestedError(f"the kernel {kernel.path} ({kernel.source}) is not one labkit fetched from a "
                          "package: the emulated AMD-V machine needs that package's kvm-amd and virtiofs modules",
                          "unset LABKIT_KERNEL and run `labkit image build` (it fetches the cloud kernel "
                          "package)") from None


def cached_modules(kernel: images.Kernel) -> Path | None:
    """The folder holding every module of :data:`MODULES` for ``kernel``, if some cache has them all."""
    for cache in [images.user_cache(), *images.shared_caches()]:
        folder = cache / "kernels" / kernel.sha256[:16] / "modules"
        if all((folder / f"{name}.ko").is_file() for name in MODULES):
            return folder
    return None


def kernel_modules(kernel: images.Kernel) -> Path:
    """The folder of L1's modules (:data:`MODULES`), fetched from the kernel's package once."""
    found = cached_modules(kernel)
    if found:
        return found
    info = package_of(kernel)
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise MissingToolError(f"{tool} is not available: the kernel modules come from a Debian package",
                                   "run labkit on the Debian/Ubuntu host the lab is set up for")
    folder = images.user_cache() / "kernels" / kernel.sha256[:16] / "modules"
    with runtime.scratch("modules") as tmp:
        deb = download_package(f"{info['package']}={info['version']}", tmp)
        unpacked = require_all(_unpack(deb, info["release"]), f"{info['package']} {info['version']}")
    for name, data in unpacked.items():
        images.publish(data, folder / f"{name}.ko")
    return folder


def require_all(found: dict[str, bytes], package: str) -> dict[str, bytes]:
    """``found`` if it holds every module of :data:`MODULES`; else which are missing, and what to do."""
    missing = [name for name in MODULES if name not in found]
    if missing:
        raise NestedError(f"{package} has no {', '.join(m + '.ko' for m in missing)}: this kernel cannot run "
                          "KVM on AMD-V (kvm-amd) or share the host's files (virtiofs) in L1",
                          "use a distribution kernel that builds KVM_AMD and VIRTIO_FS as modules "
                          "(Debian's linux-image-cloud-amd64 does)")
    return found


def _unpack(deb: Path, release: str) -> dict[str, bytes]:
    """The modules of :data:`MODULES` in a kernel ``.deb``, by name."""
    return unpack_modules(deb, release, set(MODULES))
