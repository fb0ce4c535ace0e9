"""The tiny guest: a distribution kernel and a busybox initramfs, built offline and cached.

A guest needs a kernel and something to run.  labkit takes the kernel from
where it already is (an explicit path, ``$LABKIT_KERNEL``, this host's
``/boot``) or from the distribution's package archive (``apt-get download`` of
the small cloud kernel, unpacked without installing it), and builds the
initramfs itself: a gzip'd newc cpio holding ``busybox`` from busybox-static,
a tiny CPUID program assembled by :mod:`labkit.asm`, and an ``/init`` script
(``labkit/guests/init.sh``) that prints one machine-readable line::

    LABKIT-REPORT {"v":1,"kernel":"6.1.0-…","cpus":1,"mem_kib":…,"flags":"…",…}

and powers the machine off.  :func:`parse_report` turns a console transcript
into a :class:`GuestReport`.

Stable API (the QEMU and libvirt layers both boot this guest):

* :func:`tiny_guest` → :class:`GuestImage` (``kernel``, ``initrd``, ``cmdline``, …)
* :func:`parse_report` → :class:`GuestReport`
* :func:`cache_info` → what is cached where (``labkit image info``)

Everything built is keyed by content (a changed ``init.sh``, busybox or kernel
gives a new file; an unchanged one is reused by every notebook of the user)
and kept in :mod:`labkit.imagecache`: private to the user, verified by hash
on every use, capped; or in a shared read-only cache an instructor pre-builds
with ``labkit image build --into``.

Each boot gets a :func:`nonce`: the report line and the command's markers
carry it, so a guest command cannot fake the end of its output or its exit
status (see :func:`with_nonce`).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from labkit import asm, formats, host, imagecache
# the cache's public names, kept reachable as images.X (notebooks, payload, doctor, CLI)
from labkit.imagecache import (CACHE_MAX_ENV, CACHE_MAX_MIB, PRUNE_MIN_AGE_S, CorruptCacheError,  # noqa: F401
                               cache_max_bytes, cache_size, check_into, clear_cache, prune, publish, shared_caches,
                               user_cache, verified)
from labkit.errors import DiskFullError, InvalidOptionError, LabkitError, MissingToolError, from_os_error

#: The marker that starts the guest's report line on the console.
REPORT_MARKER = "LABKIT-REPORT "
#: Printed by /init around the output of the learner's command.
COMMAND_BEGIN, COMMAND_END = "LABKIT-COMMAND-BEGIN", "LABKIT-COMMAND-END"
#: The last line /init prints before it powers the machine off.
POWEROFF_MARKER = "LABKIT-POWEROFF"

#: Kernel command line of the tiny guest, each option for a reason.  It holds
#: nothing machine-specific: QEMU and libvirt append what depends on the host
#: (e.g. ``tsc_early_khz``, see :mod:`labkit.qemu`).  Measured under TCG
#: (bench/boot.py): ``cryptomgr.notests`` saves ~0.3 s; other usual "fast boot"
#: options (mitigations=off, 8250.nr_uarts=1, i8042.*, init_on_alloc=0, lsm=…)
#: made no difference above the noise, so they are not here.
BASE_CMDLINE = " ".join((
    "console=ttyS0",        # the first serial port is the console labkit reads
    "quiet",                # every byte to an emulated UART costs time; errors still print
    "panic=-1",             # a panic reboots at once (QEMU -no-reboot: exits) instead of hanging
    "cryptomgr.notests",    # skip the crypto self-tests (~0.3 s under TCG)
    "nokaslr",              # stable kernel addresses, so register dumps read the same each boot
))

#: Distribution packages that pull in a small kernel suited to VMs, in order of preference.
KERNEL_PACKAGES = ("linux-image-cloud-amd64", "linux-image-kvm", "linux-image-virtual")

#: Guest-side sources shipped with labkit (the /init script, guest programs in assembly).
GUESTS = Path(__file__).parent / "guests"

_FORMAT = 1  # bump when the initramfs layout changes without init.sh changing
_INIT_SOURCE = "init.sh"
_CPUID_SOURCE = "cpuid.S"
_CPUID_ORIGIN = 0x400000 + formats.ELF_HEADERS  # the code follows the ELF headers in one segment


class ImageError(LabkitError):
    """The guest image cannot be found or built."""


class ReportNotFoundError(ImageError):
    """The console transcript holds no ``LABKIT-REPORT`` line."""


class GuestPanicError(ImageError):
    """The guest's kernel panicked (its console says ``Kernel panic - not syncing``)."""


#: The longest kernel command line x86 Linux takes (COMMAND_LINE_SIZE), terminating NUL included.
CMDLINE_MAX = 2048
#: Nothing bigger is a kernel image (a stock bzImage is ~8-15 MiB, a vmlinux ~60 MiB).
KERNEL_MAX_BYTES = 512 * 2**20


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Kernel:
    """A Linux kernel for the tiny guest and where it came from."""

    path: Path  # bzImage (or an ELF vmlinux when that is all there is): boots on any x86 machine type
    release: str  # e.g. "6.1.0-56-cloud-amd64"
    source: str  # how labkit found it, in words
    sha256: str
    vmlinux: Path | None  # the same kernel uncompressed, an ELF with a PVH entry note; None if unavailable


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


@dataclass(frozen=True)
class GuestReport:
    """What the guest saw from the inside, as its ``/init`` reported it."""

    kernel_release: str
    machine: str
    cpus: int
    mem_kib: int
    cpu_vendor: str
    cpu_model: str
    flags: frozenset[str]
    cpuid_signature: str  # CPUID leaf 0x40000000 as text ('' when the CPU shows no hypervisor)
    kernel_hypervisor: str  # the guest kernel's "Hypervisor detected: …" ('' if it said nothing)
    clocksource: str
    uptime_s: float  # the guest's clock when /init started: kernel start → userspace
    cmdline: str
    command_output: str | None = None
    command_status: int | None = None

    @property
    def memory_mib(self) -> int:
        return self.mem_kib // 1024

    @property
    def hypervisor_flag(self) -> bool:
        """CPUID.1:ECX bit 31: the CPU tells software it runs under a hypervisor."""
        return "hypervisor" in self.flags

    @property
    def hypervisor(self) -> str | None:
        """The hypervisor the guest's CPU names (e.g. ``"QEMU TCG"``, ``"KVM"``), or None."""
        if not self.hypervisor_flag:
            return None
        return host.HYPERVISOR_SIGNATURES.get(self.cpuid_signature) or self.kernel_hypervisor or None

    @property
    def hardware_virtualization(self) -> str | None:
        """VT-x/AMD-V as the guest's CPU advertises it (what nested virtualization would need)."""
        return "Intel VT-x" if "vmx" in self.flags else "AMD-V" if "svm" in self.flags else None

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(flags=sorted(self.flags), hypervisor=self.hypervisor,
                    hardware_virtualization=self.hardware_virtualization)
        return data


# --------------------------------------------------------------------------- report parsing


_PANIC = re.compile(r"^(?:\[[ \d.]+\] )?Kernel panic - not syncing: .*$", re.MULTILINE)


def nonce() -> str:
    """A fresh unguessable token for one boot (see :func:`with_nonce`)."""
    return secrets.token_hex(8)


def with_nonce(initrd: Path, folder: Path, token: str) -> Path:
    """A copy of ``initrd`` in ``folder`` that also holds ``/labkit/nonce`` = ``token``; its path.

    ``/init`` reads the nonce, deletes the file and only then runs the
    learner's command, so the command cannot learn it (it is not on the
    kernel command line, in ``dmesg`` or in the environment): the markers it
    would have to print to fake the end of its output are unknown to it.
    (A command that digs through PID 1's memory as the guest's root could
    still find it: this guards the output's framing, not against a hostile guest.)
    """
    extra = formats.cpio([("labkit", 0o040755, b""), ("labkit/nonce", 0o100600, token.encode() + b"\n")])
    target = folder / "initrd.cpio.gz"
    with open(target, "wb") as out:
        with open(initrd, "rb") as src:
            shutil.copyfileobj(src, out)
        out.write(gzip.compress(extra, mtime=0))
    target.chmod(0o644)  # libvirt's QEMU (another user) reads it; the folder is what is private
    return target


def report_prefix(token: str | None = None) -> str:
    """How the report line starts: ``LABKIT-REPORT <nonce> `` for a boot with a nonce."""
    return f"{REPORT_MARKER}{token} " if token else REPORT_MARKER


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(the console is empty)"


def parse_report(console: str, token: str | None = None) -> GuestReport:
    """The guest's report from a console transcript (serial log), with the command's output.

    ``token`` is the boot's nonce (:func:`with_nonce`): only a report line
    and command markers carrying it count.  Raises :class:`GuestPanicError`
    when the guest's kernel panicked before the command finished, and
    :class:`ReportNotFoundError`, quoting the end of the transcript, when the
    guest never printed its report (it did not reach ``/init``).
    """
    text = console.replace("\r\n", "\n").replace("\r", "")
    start = report_prefix(token)
    line = next((l for l in text.splitlines() if l.startswith(start)), None)
    output, status = _command_result(text, token) if line is not None else (None, None)
    panic = _PANIC.search(text)
    if panic and status is None:
        raise GuestPanicError(
            f"the guest's kernel panicked: {panic.group(0).split('Kernel panic - ')[-1]}. Last console lines:\n"
            f"{_tail(text[:panic.end()], 12)}",
            "if your command crashed the guest on purpose (echo c > /proc/sysrq-trigger), that is the "
            "expected end; otherwise the lines above say why, and a damaged image is rebuilt with "
            "`labkit image build --force`")
    if line is None:
        tail = _tail(text)
        raise ReportNotFoundError(
            f"the guest printed no {REPORT_MARKER.strip()} line: it did not reach its /init. "
            f"Last console lines:\n{tail}",
            "look at the console lines above for the kernel's last words (a panic, a missing "
            "initramfs); rebuild the image with `labkit image build --force`")
    body = line[len(start):]
    if token is None and re.match(r"[0-9a-f]{16} \{", body):  # a boot with a nonce, read without it
        body = body[17:]
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or not {"kernel", "cpus", "mem_kib", "flags"} <= data.keys():
            raise ValueError("fields are missing")
    except ValueError as exc:
        raise ReportNotFoundError(f"the guest's report line is not valid JSON ({exc}): {line!r}. "
                                  f"Last console lines:\n{_tail(text)}",
                                  "the guest stopped while printing it, or something else wrote to its "
                                  "console meanwhile: see the lines above; boot again") from None
    return GuestReport(
        kernel_release=data["kernel"], machine=data["machine"], cpus=int(data["cpus"]),
        mem_kib=int(data["mem_kib"]), cpu_vendor=data["vendor"], cpu_model=data["model"],
        flags=frozenset(data["flags"].split()), cpuid_signature=_signature(data["cpuid_40000000"]),
        kernel_hypervisor=data["kernel_hypervisor"], clocksource=data["clocksource"],
        uptime_s=float(data["uptime_s"]), cmdline=data["cmdline"],
        command_output=output, command_status=status)


def find_panic(console: str, token: str | None = None) -> GuestPanicError | None:
    """The :class:`GuestPanicError` a console shows (the kernel panicked before the command ended), or None."""
    try:
        parse_report(console, token)
    except GuestPanicError as exc:
        return exc
    except ImageError:
        pass
    return None


def _signature(hex_text: str) -> str:
    """The 12 signature bytes (EBX, ECX, EDX) as text, NULs dropped."""
    try:
        raw = bytes.fromhex(hex_text.strip())
    except ValueError:
        return ""
    return raw.rstrip(b"\0").decode("ascii", "replace")


def _command_result(text: str, token: str | None) -> tuple[str | None, int | None]:
    tag = f" {token}" if token else ""
    begin = re.search(rf"^{COMMAND_BEGIN}{tag}\n" if token else rf"^{COMMAND_BEGIN}(?: [0-9a-f]{{16}})?\n",
                      text, re.MULTILINE)
    if begin is None:
        return None, None
    body = text[begin.end():]
    match = re.search(rf"^{COMMAND_END}{tag} (\d+)$" if token else rf"^{COMMAND_END}(?: [0-9a-f]{{16}})? (\d+)$",
                      body, re.MULTILINE)
    if match is None:  # the guest stopped while the command ran
        return body, None
    return body[:match.start()], int(match.group(1))


# --------------------------------------------------------------------------- kernel


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
        return _kernel_at(Path(explicit), "given explicitly" if path else "$LABKIT_KERNEL", into)
    booted = Path(f"/boot/vmlinuz-{platform.release()}")
    if os.access(booted, os.R_OK):
        return _kernel_at(booted, "this host's running kernel", into)
    if not refresh:
        cached = _cached_package_kernel(imagecache.caches(into))
        if cached:
            return cached
        own = _cached_package_kernel(imagecache.caches(None)) if into is not None else None
        if own:  # filling a shared cache: copy the kernel this user has rather than download it again
            return _copy_kernel(own, into)
    if not fetch:
        raise ImageError("no kernel for the tiny guest: none given, /boot has none readable, none cached",
                         "run `labkit image build` (fetches the distribution's cloud kernel), "
                         "or pass a kernel path / set LABKIT_KERNEL=/path/to/vmlinuz")
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
    fix = ("pass the path of a bzImage (e.g. /boot/vmlinuz-…), or leave it out to let labkit fetch the "
           "distribution's cloud kernel")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MissingToolError(f"kernel {path} ({how}) does not exist", fix) from None
    except OSError as exc:
        raise from_os_error(exc, f"look at kernel {path} ({how})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidOptionError(f"kernel {path} ({how}) is a directory, not a kernel image", fix)
    if not stat.S_ISREG(st.st_mode):
        kind = "a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(
            st.st_mode) else "a pipe or socket"
        raise InvalidOptionError(f"kernel {path} ({how}) is {kind}, not a kernel image file", fix)
    if st.st_size == 0:
        raise InvalidOptionError(f"kernel {path} ({how}) is an empty file", fix)
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
        return _cached_package_kernel([cache], package)


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
    data = None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            if re.fullmatch(r"\./boot/vmlinuz-.*", member.name) and member.isfile():
                data = tar.extractfile(member).read()
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


# --------------------------------------------------------------------------- initramfs


def _busybox() -> tuple[Path, bytes]:
    path = shutil.which("busybox") or "/bin/busybox"
    if not os.path.isfile(path):
        raise MissingToolError("busybox is not installed: the tiny guest's userland is busybox-static",
                               "sudo apt-get install busybox-static (bash scripts/setup.sh installs it)")
    data = Path(path).read_bytes()
    if formats.is_dynamic(data):
        raise ImageError(f"{path} is dynamically linked: inside the guest there is no C library for it",
                         "sudo apt-get install busybox-static (it replaces the dynamic busybox)")
    return Path(path), data


def _guest_file(name: str) -> str:
    return (GUESTS / name).read_text()


def initramfs_key(command: str | None = None) -> str:
    """The content key of the initramfs for ``command``: changes when anything inside would."""
    _, busybox = _busybox()
    parts = [str(_FORMAT), hashlib.sha256(busybox).hexdigest(), _guest_file(_INIT_SOURCE),
             _guest_file(_CPUID_SOURCE)]
    base = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    if command is None:
        return base
    return f"{base}-cmd-{hashlib.sha256(command.encode()).hexdigest()[:16]}"


def build_initramfs(command: str | None = None, *, rebuild: bool = False, into: Path | None = None) -> Path:
    """The tiny guest's initramfs (gzip'd newc cpio), from a cache or built now.

    With ``command``, a second small cpio holding ``/labkit/command`` is
    appended (Linux unpacks concatenated archives in order), so the 1 MB base
    is built once and every command costs only a copy.
    """
    if command is not None and not command.strip():
        raise InvalidOptionError("the guest command is empty", "pass a shell command, e.g. 'uname -a', or None")
    key = initramfs_key(command)
    name = f"initramfs/tiny-{key}.cpio.gz"
    if not rebuild:
        for cache in imagecache.caches(into):
            found = cache / name
            if found.is_file() and (imagecache.is_shared(cache) or imagecache.sum_file(found).is_file()):
                imagecache.touch(imagecache.sum_file(found))  # in use (its .sha256: the image's own times key checks)
                return verified(found)
    cache = into or user_cache()
    base_key = key.split("-cmd-")[0]
    base = cache / f"initramfs/tiny-{base_key}.cpio.gz"
    with imagecache.locked(cache):
        if rebuild or not base.is_file() or not imagecache.sum_file(base).is_file():
            publish(_base_archive(), base)
        if command is not None:
            extra = formats.cpio([("labkit", 0o040755, b""),
                                  ("labkit/command", 0o100755, command.encode() + b"\n")])
            publish(verified(base).read_bytes() + gzip.compress(extra, mtime=0), cache / name)
        if not imagecache.is_shared(cache):
            prune(cache, keep=(cache / name, base))
        return verified(cache / name)


def _base_archive() -> bytes:
    busybox_path, busybox = _busybox()
    applets = subprocess.run([str(busybox_path), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    cpuid = asm.assemble(_guest_file(_CPUID_SOURCE), bits=64, origin=_CPUID_ORIGIN)
    entries: list[tuple[str, int, bytes]] = [(d, 0o040755, b"") for d in ("bin", "dev", "proc", "sys", "tmp")]
    entries += [("dev/console", 0o020600, b"5,1"),  # the kernel opens it for /init's stdin/out
                ("init", 0o100755, _guest_file(_INIT_SOURCE).encode()),
                ("bin/busybox", 0o100755, busybox),
                ("bin/labkit-cpuid", 0o100755, formats.static_elf(cpuid.image, cpuid.origin))]
    entries += [(f"bin/{a}", 0o120777, b"busybox") for a in sorted(set(applets) - {"busybox"})]
    return gzip.compress(formats.cpio(entries), compresslevel=6, mtime=0)


# --------------------------------------------------------------------------- the guest


def check_guest(memory_mib: object, vcpus: object, cmdline: str | None = None, *,
                max_memory_mib: int = 65536) -> None:
    """What QEMU (:mod:`labkit.qemu`) and libvirt (:mod:`labkit.virt`) both refuse before a boot, said clearly.

    Whole numbers only (``"256"`` is a typo, not 256), and no more vCPUs than
    the host has CPUs: each vCPU is a host thread, so an overcommitted guest
    mostly waits (64 vCPUs on 2 CPUs did not boot in 60 s).
    """
    cpus = os.cpu_count() or 1
    if isinstance(memory_mib, bool) or not isinstance(memory_mib, int) or not 16 <= memory_mib <= max_memory_mib:
        raise InvalidOptionError(f"memory_mib={memory_mib!r}: must be a whole number of MiB between 16 and "
                                 f"{max_memory_mib}", "the tiny guest is happy with 128-256")
    if isinstance(vcpus, bool) or not isinstance(vcpus, int) or not 1 <= vcpus <= 64:
        raise InvalidOptionError(f"vcpus={vcpus!r}: must be a whole number from 1 to 64",
                                 f"this host has {cpus} CPUs; 1 or 2 boot fastest")
    if vcpus > cpus:
        raise InvalidOptionError(f"vcpus={vcpus}: this host has only {cpus} CPUs. Each vCPU is a thread on a "
                                 "host CPU, so the extra ones only wait their turn: the guest boots much slower "
                                 "(64 vCPUs on 2 CPUs did not boot within 60 s)", f"use 1 to {cpus} vCPUs")
    if cmdline is not None and len(cmdline.encode()) >= CMDLINE_MAX:
        raise InvalidOptionError(f"the kernel command line is {len(cmdline.encode())} bytes: Linux on x86 takes "
                                 f"at most {CMDLINE_MAX - 1}", "shorten it (the tiny guest's own is ~80 bytes)")


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
