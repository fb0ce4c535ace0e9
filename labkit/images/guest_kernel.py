"""The tiny guest's kernel: found on this host or in a cache, or fetched from the distribution's archive."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from labkit import formats
from labkit.errors import DiskFullError, InvalidOptionError, MissingToolError, from_os_error
from labkit.i18n import Phrase
from labkit.i18n import noop as N_
from labkit.images import cache as imagecache
from labkit.images.cache import publish, user_cache, verified
from labkit.images.errors import ImageError

#: Distribution packages that pull in a small kernel suited to VMs, in order of preference.
KERNEL_PACKAGES = ("linux-image-cloud-amd64", "linux-image-kvm", "linux-image-virtual")

#: Nothing bigger is a kernel image (a stock bzImage is ~8-15 MiB, a vmlinux ~60 MiB).
KERNEL_MAX_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Kernel:
    """A Linux kernel for the tiny guest and where it came from."""

    path: Path  # bzImage (or an ELF vmlinux when that is all there is): boots on any x86 machine type
    release: str  # e.g. "6.1.0-56-cloud-amd64"
    source: str  # how labkit found it, in words
    sha256: str
    vmlinux: Path | None  # the same kernel uncompressed, an ELF with a PVH entry note; None if unavailable


def find_kernel(path: Path | str | None = None, *, fetch: bool = True, refresh: bool = False,
                into: Path | None = None, progress: bool = True) -> Kernel:
    """A kernel for the tiny guest: the first of

    1. ``path`` (an explicit bzImage or vmlinux), else ``$LABKIT_KERNEL``;
    2. this host's ``/boot/vmlinuz-$(uname -r)`` when it is readable;
    3. a package kernel already in a cache (``refresh=True`` checks the archive for a newer one);
    4. the distribution's kernel package, fetched with ``apt-get download`` (if ``fetch``).
    """
    explicit = path or os.environ.get("LABKIT_KERNEL")
    if explicit:
        return _kernel_at(Path(explicit), Phrase(N_("given explicitly")) if path else "$LABKIT_KERNEL", into)
    booted = Path(f"/boot/vmlinuz-{platform.release()}")
    if os.access(booted, os.R_OK):
        return _kernel_at(booted, Phrase(N_("this host's running kernel")), into)
    if not refresh:
        cached = _cached_package_kernel(imagecache.caches(into))
        if cached:
            return cached
        own = _cached_package_kernel(imagecache.caches(None)) if into is not None else None
        if own and into is not None:  # filling a shared cache: copy the kernel this user has, not download it again
            return _copy_kernel(own, into)
    if not fetch:
        where = ", ".join(str(c) for c in imagecache.caches(into))
        raise ImageError(f"no kernel for the tiny guest: none given, /boot has none readable, none cached (in {where})",
                         "run `labkit image build` once (it fetches the distribution's cloud kernel: the only step "
                         "that needs the network), or use an instructor's shared cache (sudo labkit image build "
                         "--into /var/cache/labkit), or pass a kernel path / set LABKIT_KERNEL=/path/to/vmlinuz")
    return fetch_kernel(into=into, progress=progress)


def _kernel_at(path: Path, how: str, into: Path | None) -> Kernel:
    data = read_kernel_file(path, how)
    kind = formats.kernel_kind(data)
    if kind is None:
        raise InvalidOptionError(f"{path} ({how}) is neither a bzImage nor an ELF vmlinux with a PVH entry",
                                 "pass a Linux x86-64 kernel image such as /boot/vmlinuz-…")
    sha = hashlib.sha256(data).hexdigest()
    vmlinux = path if kind == "vmlinux" else _vmlinux_for(data, sha, imagecache.caches(into))
    return Kernel(path, formats.kernel_release(data) or "unknown", f"{path} ({how})", sha, vmlinux)


def read_kernel_file(path: Path, how: str) -> bytes:
    """The bytes of a kernel image the user named, or an error that says what ``path`` really is.

    ``/dev/zero`` (endless), ``/dev/null`` (empty) or ``/tmp`` (a directory)
    exist: "does not exist" would mislead, and reading a device could hang.
    """
    fix = Phrase(N_("pass the path of a bzImage (e.g. /boot/vmlinuz-…), or leave it out to let labkit fetch the "
                    "distribution's cloud kernel"))
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MissingToolError(Phrase(N_("kernel {path} ({how}) does not exist"), path=path, how=how), fix) from None
    except OSError as exc:
        raise from_os_error(exc, f"look at kernel {path} ({how})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidOptionError(Phrase(N_("kernel {path} ({how}) is a directory, not a kernel image"), path=path,
                                        how=how), fix)
    if not stat.S_ISREG(st.st_mode):
        kind = "a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(
            st.st_mode) else "a pipe or socket"
        raise InvalidOptionError(f"kernel {path} ({how}) is {kind}, not a kernel image file", fix)
    if st.st_size == 0:
        raise InvalidOptionError(Phrase(N_("kernel {path} ({how}) is an empty file"), path=path, how=how), fix)
    if st.st_size > KERNEL_MAX_BYTES:
        raise InvalidOptionError(f"kernel {path} ({how}) is {st.st_size >> 20} MiB: too big to be a kernel "
                                 "image", fix)
    if not os.access(path, os.R_OK):
        raise ImageError(f"kernel {path} ({how}) is not readable by you",
                         f"sudo chmod a+r {path}, or leave it out to fetch a kernel package")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise from_os_error(exc, f"read kernel {path} ({how})") from None


def _cached_kernels(caches: list[Path]) -> list[tuple[Path, dict]]:
    """(folder, kernel.json) of every package kernel in ``caches``."""
    found = []
    for cache in caches:
        for meta in (cache / "kernels").glob("*/kernel.json"):
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(meta.read_text())
                if info.get("package") and (meta.parent / "vmlinuz").is_file():
                    found.append((meta.parent, info))
    return found


def _cached_package_kernel(caches: list[Path], package: str | None = None) -> Kernel | None:
    """The newest cached package kernel (of ``package``, if given)."""
    found = [(f, i) for f, i in _cached_kernels(caches) if package in (None, i["package"])]
    if not found:
        return None
    folder, info = max(found, key=lambda f: f[1].get("fetched", 0))
    vmlinuz = verified(folder / "vmlinuz", info["sha256"])
    imagecache.touch(imagecache.sum_file(vmlinuz))  # in use: least recently used kernels are pruned first
    return Kernel(vmlinuz, info["release"], info["source"], info["sha256"], _checked_vmlinux(vmlinuz))


def _checked_vmlinux(vmlinuz: Path) -> Path | None:
    """The verified ``vmlinux`` beside a cached ``vmlinuz``; one an older labkit stored without a hash is
    extracted again (in the user's cache) or not used (a read-only shared cache: the bzImage boots too)."""
    vmlinux = vmlinuz.with_name("vmlinux")
    if vmlinux.is_file() and imagecache.sum_file(vmlinux).is_file():
        return verified(vmlinux)
    if imagecache.is_shared(vmlinux):
        return None
    with imagecache.locked(vmlinux.parent.parent.parent):
        data = formats.extract_vmlinux(vmlinuz.read_bytes())
        return publish(data, vmlinux) if data else None


def _apt(args: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        if "No space left" in proc.stderr or "Disk quota" in proc.stderr:
            raise DiskFullError(f"`{' '.join(args)}` failed: the disk is full ({' / '.join(detail)})",
                                f"free space in {cwd or 'the cache'} (df -h), `labkit cleanup --cache`, or set "
                                "LABKIT_KERNEL=/path/to/vmlinuz to use a kernel you have")
        fix = ("sudo apt-get update (the package lists are missing or stale), then run "
               "`labkit image build` again" if "Unable to locate" in proc.stderr or "No packages" in proc.stderr
               else "check that this host reaches its package archive (deb.debian.org), or pass a kernel "
                    "path / set LABKIT_KERNEL")
        raise ImageError(f"`{' '.join(args)}` failed: {' / '.join(detail)}", fix)
    return proc.stdout


def kernel_package() -> str:
    """The versioned kernel package (e.g. ``linux-image-6.1.0-56-cloud-amd64``) the archive offers."""
    if shutil.which("apt-cache") is None:
        raise MissingToolError("apt-cache is not available: this is not a Debian/Ubuntu host",
                               "pass a kernel path or set LABKIT_KERNEL=/path/to/vmlinuz")
    for meta in KERNEL_PACKAGES:
        proc = subprocess.run(["apt-cache", "depends", meta], capture_output=True, text=True, check=False)
        match = re.search(r"Depends: (linux-image-\d\S*)", proc.stdout)
        if proc.returncode == 0 and match:
            return match.group(1)
    raise ImageError(f"the package archive offers none of {', '.join(KERNEL_PACKAGES)}",
                     "sudo apt-get update, or pass a kernel path / set LABKIT_KERNEL=/path/to/vmlinuz")


def fetch_kernel(*, into: Path | None = None, progress: bool = True) -> Kernel:
    """Download the distribution's small kernel package and unpack its ``vmlinuz`` (nothing installed).

    ``apt-get download`` fetches the ``.deb`` as an ordinary user; ``dpkg-deb
    --fsys-tarfile`` streams its files, of which only ``/boot/vmlinuz-*`` is
    kept.  The kernel is also decompressed into ``vmlinux`` for fast boots.
    """
    cache = into or user_cache()
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise MissingToolError(f"{tool} is not available: labkit fetches kernels with Debian/Ubuntu tools",
                                   "pass a kernel path or set LABKIT_KERNEL=/path/to/vmlinuz")
    with imagecache.locked(cache), tqdm(total=4, desc="guest kernel", unit="step", disable=not progress,
                              bar_format="{desc}: {n}/{total} {postfix}") as bar:
        bar.set_postfix_str("asking the archive")
        package = kernel_package()
        cached = _cached_package_kernel([cache], package)
        if cached:
            bar.update(4)
            return cached
        bar.update(1)
        bar.set_postfix_str(f"apt-get download {package}")
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=cache) as tmp:
            os.chmod(tmp, 0o755)  # apt's sandbox user must be able to write the .deb here
            _apt(["apt-get", "download", "-q", package], cwd=Path(tmp))
            debs = sorted(Path(tmp).glob("*.deb"))
            if not debs:
                raise ImageError(f"apt-get download {package} left no .deb behind", "run it by hand to see why")
            bar.update(1)
            bar.set_postfix_str("unpacking vmlinuz")
            data = _vmlinuz_from_deb(debs[0])
            version = _apt(["dpkg-deb", "-f", str(debs[0]), "Version"]).strip()
        bar.update(1)
        bar.set_postfix_str("decompressing to vmlinux")
        sha = hashlib.sha256(data).hexdigest()
        folder = cache / "kernels" / sha[:16]
        publish(data, folder / "vmlinuz")
        vmlinux = formats.extract_vmlinux(data)
        if vmlinux:
            publish(vmlinux, folder / "vmlinux")
        info = {"release": formats.kernel_release(data) or package.removeprefix("linux-image-"),
                "source": f"Debian/Ubuntu package {package} {version} (apt-get download)",
                "package": package, "version": version, "sha256": sha, "fetched": time.time()}
        publish(json.dumps(info, indent=2).encode(), folder / "kernel.json")
        bar.update(1)
        fetched = _cached_package_kernel([cache], package)
        assert fetched is not None  # just published
        return fetched


def _copy_kernel(kernel: Kernel, into: Path) -> Kernel:
    """A cached package kernel (vmlinuz, vmlinux, kernel.json) copied into the cache ``into``."""
    info = json.loads((kernel.path.parent / "kernel.json").read_text())
    with imagecache.locked(into):
        for name in ("vmlinuz", "vmlinux", "kernel.json"):
            if (kernel.path.parent / name).is_file():
                publish((kernel.path.parent / name).read_bytes(), into / "kernels" / kernel.sha256[:16] / name)
    copied = _cached_package_kernel([into], info["package"])
    assert copied is not None  # just written
    return copied


def _vmlinuz_from_deb(deb: Path) -> bytes:
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None  # stdout=PIPE
    data = None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is not None and re.fullmatch(r"\./boot/vmlinuz-.*", member.name):
                data = extracted.read()
                break
    proc.stdout.close()
    proc.kill()
    proc.wait()
    if data is None:
        raise ImageError(f"{deb.name} holds no /boot/vmlinuz-*", "pass a kernel path or set LABKIT_KERNEL")
    return data


# --------------------------------------------------------------------------- vmlinux


def _vmlinux_for(bzimage: bytes, sha: str, caches: list[Path]) -> Path | None:
    """The cached vmlinux of a bzImage (by its sha256), extracting it into the first cache once."""
    for cache in caches:
        candidate = cache / "kernels" / sha[:16] / "vmlinux"
        if candidate.is_file() and imagecache.sum_file(candidate).is_file():
            return verified(candidate)
    with imagecache.locked(caches[0]):
        data = formats.extract_vmlinux(bzimage)
        return publish(data, caches[0] / "kernels" / sha[:16] / "vmlinux") if data else None
