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
gives a new file; an unchanged one is reused by every notebook and user of the
cache), written atomically, and readable by other users.  Caches are searched
in order: the user's (``runtime.cache_dir()/images``), then shared read-only
ones (``$LABKIT_SHARED_CACHE``, colon-separated, else ``/var/cache/labkit`` if
it exists) that an instructor can pre-build with ``labkit image build --into``.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from labkit import asm, formats, host, runtime
from labkit.errors import InvalidOptionError, LabkitError, MissingToolError

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


def parse_report(console: str) -> GuestReport:
    """The guest's report from a console transcript (serial log), with the command's output.

    Raises :class:`ReportNotFoundError`, quoting the end of the transcript,
    when the guest never printed its report (it did not reach ``/init``).
    """
    text = console.replace("\r\n", "\n").replace("\r", "")
    line = next((l for l in text.splitlines() if l.startswith(REPORT_MARKER)), None)
    if line is None:
        tail = "\n".join(text.strip().splitlines()[-15:]) or "(the console is empty)"
        raise ReportNotFoundError(
            f"the guest printed no {REPORT_MARKER.strip()} line: it did not reach its /init. "
            f"Last console lines:\n{tail}",
            "look at the console lines above for the kernel's last words (a panic, a missing "
            "initramfs); rebuild the image with `labkit image build --force`")
    try:
        data = json.loads(line[len(REPORT_MARKER):])
    except json.JSONDecodeError as exc:
        raise ReportNotFoundError(f"the guest's report line is not valid JSON ({exc}): {line!r}",
                                  "a truncated console? boot again; if it persists, report a bug") from None
    output, status = _command_result(text)
    return GuestReport(
        kernel_release=data["kernel"], machine=data["machine"], cpus=int(data["cpus"]),
        mem_kib=int(data["mem_kib"]), cpu_vendor=data["vendor"], cpu_model=data["model"],
        flags=frozenset(data["flags"].split()), cpuid_signature=_signature(data["cpuid_40000000"]),
        kernel_hypervisor=data["kernel_hypervisor"], clocksource=data["clocksource"],
        uptime_s=float(data["uptime_s"]), cmdline=data["cmdline"],
        command_output=output, command_status=status)


def _signature(hex_text: str) -> str:
    """The 12 signature bytes (EBX, ECX, EDX) as text, NULs dropped."""
    try:
        raw = bytes.fromhex(hex_text.strip())
    except ValueError:
        return ""
    return raw.rstrip(b"\0").decode("ascii", "replace")


def _command_result(text: str) -> tuple[str | None, int | None]:
    start = text.find(COMMAND_BEGIN + "\n")
    if start < 0:
        return None, None
    body = text[start + len(COMMAND_BEGIN) + 1:]
    match = re.search(rf"^{COMMAND_END} (\d+)$", body, re.MULTILINE)
    if match is None:  # the guest stopped while the command ran
        return body, None
    return body[:match.start()], int(match.group(1))


# --------------------------------------------------------------------------- cache


def shared_caches() -> list[Path]:
    """Read-only caches an instructor prepared: ``$LABKIT_SHARED_CACHE`` or ``/var/cache/labkit``."""
    env = os.environ.get("LABKIT_SHARED_CACHE")
    if env is not None:
        return [Path(p) for p in env.split(os.pathsep) if p]
    default = Path("/var/cache/labkit")
    return [default] if default.is_dir() else []


def user_cache() -> Path:
    """Where this user's images are built: ``runtime.cache_dir()/images``."""
    return runtime.cache_dir() / "images"


def _caches(into: Path | None) -> list[Path]:
    return [into] if into else [user_cache(), *shared_caches()]


def publish(data: bytes, target: Path) -> Path:
    """Write ``data`` to ``target`` atomically, readable by every user (a shared cache)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(target.parent, 0o755)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One builder at a time per cache (parallel test workers, two notebooks)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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
        cached = _cached_package_kernel(_caches(into))
        if cached:
            return cached
        own = _cached_package_kernel(_caches(None)) if into is not None else None
        if own:  # filling a shared cache: copy the kernel this user has rather than download it again
            return _copy_kernel(own, into)
    if not fetch:
        raise ImageError("no kernel for the tiny guest: none given, /boot has none readable, none cached",
                         "run `labkit image build` (fetches the distribution's cloud kernel), "
                         "or pass a kernel path / set LABKIT_KERNEL=/path/to/vmlinuz")
    return fetch_kernel(into=into, progress=progress)


def _kernel_at(path: Path, how: str, into: Path | None) -> Kernel:
    if not path.is_file():
        raise MissingToolError(f"kernel {path} ({how}) does not exist",
                               "pass the path of a bzImage (e.g. /boot/vmlinuz-…), or leave it out to "
                               "let labkit fetch the distribution's cloud kernel")
    if not os.access(path, os.R_OK):
        raise ImageError(f"kernel {path} ({how}) is not readable by you",
                         f"sudo chmod a+r {path}, or leave it out to fetch a kernel package")
    data = path.read_bytes()
    kind = formats.kernel_kind(data)
    if kind is None:
        raise InvalidOptionError(f"{path} ({how}) is neither a bzImage nor an ELF vmlinux with a PVH entry",
                                 "pass a Linux x86-64 kernel image such as /boot/vmlinuz-…")
    sha = hashlib.sha256(data).hexdigest()
    vmlinux = path if kind == "vmlinux" else _vmlinux_for(data, sha, _caches(into))
    return Kernel(path, formats.kernel_release(data) or "unknown", f"{path} ({how})", sha, vmlinux)


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
    vmlinux = folder / "vmlinux"
    return Kernel(folder / "vmlinuz", info["release"], info["source"], info["sha256"],
                  vmlinux if vmlinux.is_file() else None)


def _apt(args: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
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
    with _locked(cache), tqdm(total=4, desc="guest kernel", unit="step", disable=not progress,
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
    with _locked(into):
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
        if candidate.is_file():
            return candidate
    with _locked(caches[0]):
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
        for cache in _caches(into):
            if (cache / name).is_file():
                _touch(cache / name)  # in use: keeps it from being pruned as idle
                return cache / name
    cache = into or user_cache()
    base_key = key.split("-cmd-")[0]
    base = cache / f"initramfs/tiny-{base_key}.cpio.gz"
    with _locked(cache):
        if rebuild or not base.is_file():
            publish(_base_archive(), base)
        if command is None:
            return base
        extra = formats.cpio([("labkit", 0o040755, b""), ("labkit/command", 0o100755, command.encode() + b"\n")])
        built = publish(base.read_bytes() + gzip.compress(extra, mtime=0), cache / name)
        _prune(cache / "initramfs", base_key)
        return built


#: Cached images used in the last hour are never pruned: another notebook, or another
#: checkout of the lab sharing this cache, may be booting one right now.
PRUNE_MIN_AGE_S = 3600


def _prune(folder: Path, base_key: str, keep: int = 16) -> None:
    """Drop idle initramfs files of another base, and idle command images beyond the ``keep`` newest."""
    idle_since = time.time() - PRUNE_MIN_AGE_S
    commands = []
    for path in folder.glob("tiny-*.cpio.gz"):
        try:
            idle = path.stat().st_mtime < idle_since
        except FileNotFoundError:  # pruned by a concurrent build
            continue
        if not path.name.startswith(f"tiny-{base_key}"):
            if idle:
                path.unlink(missing_ok=True)
        elif "-cmd-" in path.name:
            commands.append((path.stat().st_mtime, idle, path))
    commands.sort(reverse=True)
    for _mtime, idle, path in commands[keep:]:
        if idle:
            path.unlink(missing_ok=True)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:  # a read-only shared cache: its owner prunes it
        pass


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


def tiny_guest(kernel: Path | str | None = None, command: str | None = None, *, fetch: bool = True,
               refresh: bool = False, rebuild: bool = False, into: Path | None = None,
               progress: bool = True) -> GuestImage:
    """The tiny guest, ready to boot: kernel (see :func:`find_kernel`) + initramfs + command line.

    ``command`` is a shell command the guest runs after its report (its output
    comes back in :attr:`GuestReport.command_output`).  Nothing is downloaded
    unless no kernel is found and ``fetch`` is true.
    """
    found = find_kernel(kernel, fetch=fetch, refresh=refresh, into=into, progress=progress)
    initrd = build_initramfs(command, rebuild=rebuild, into=into)
    return GuestImage(found.path, initrd, BASE_CMDLINE, found.release, found.source, found.vmlinux, command)


@dataclass(frozen=True)
class CachedFile:
    path: Path
    kind: str  # "kernel", "vmlinux", "initramfs"
    size: int
    detail: str


def cache_info() -> list[CachedFile]:
    """Every kernel and initramfs in the user's and the shared caches."""
    files = []
    for cache in _caches(None):
        for folder, info in _cached_kernels([cache]):
            files.append(CachedFile(folder / "vmlinuz", "kernel", (folder / "vmlinuz").stat().st_size,
                                    f"{info['release']} from {info['source']}"))
        for vmlinux in sorted((cache / "kernels").glob("*/vmlinux")):
            files.append(CachedFile(vmlinux, "vmlinux", vmlinux.stat().st_size, "uncompressed kernel (PVH entry)"))
        for initrd in sorted((cache / "initramfs").glob("tiny-*.cpio.gz")):
            files.append(CachedFile(initrd, "initramfs", initrd.stat().st_size,
                                    "with a command" if "-cmd-" in initrd.name else "busybox + /init"))
    return files
