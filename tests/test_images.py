"""labkit.images: the tiny guest's kernel, initramfs, cache and report line (no boots here)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES
from labkit import formats, host, images
from labkit.errors import InvalidOptionError, MissingToolError

CONSOLES = FIXTURES / "consoles"


@pytest.fixture(scope="module")
def guest() -> images.GuestImage:
    """The image setup.sh built (never downloads: fetch=False)."""
    return images.tiny_guest(fetch=False, progress=False)


@pytest.fixture
def no_host_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this host has no readable /boot kernel and no $LABKIT_KERNEL."""
    monkeypatch.delenv("LABKIT_KERNEL", raising=False)
    monkeypatch.setattr(images.platform, "release", lambda: "0.0.0-labkit-test-none")


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh user cache and no shared cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    monkeypatch.setenv("LABKIT_SHARED_CACHE", "")
    return tmp_path


# --------------------------------------------------------------------------- the report line


def test_parse_report_of_a_tcg_guest() -> None:
    report = images.parse_report((CONSOLES / "tiny-tcg.txt").read_text())
    assert report.kernel_release == "6.1.0-56-cloud-amd64" and report.machine == "x86_64"
    assert report.cpus == 2 and 80 <= report.memory_mib <= 128
    assert report.hypervisor_flag and report.cpuid_signature == "TCGTCGTCGTCG"
    assert report.hypervisor == "QEMU TCG" and report.kernel_hypervisor == ""
    assert report.hardware_virtualization == "AMD-V"  # qemu64 advertises svm under TCG
    assert "tsc_early_khz=" in report.cmdline and report.uptime_s > 0
    assert report.command_output == "hello from the guest\nx86_64\n" and report.command_status == 0


def test_parse_report_of_a_kvm_guest() -> None:
    report = images.parse_report((CONSOLES / "tiny-kvm-vtx.txt").read_text())
    assert report.cpuid_signature == "KVMKVMKVM"  # trailing NULs dropped
    assert report.hypervisor == "KVM" and report.kernel_hypervisor == "KVM"
    assert report.hardware_virtualization == "Intel VT-x" and report.clocksource == "kvm-clock"


def test_report_without_hypervisor_flag_names_no_hypervisor() -> None:
    text = (CONSOLES / "tiny-tcg.txt").read_text().replace(" hypervisor ", " ")
    report = images.parse_report(text)
    assert not report.hypervisor_flag and report.hypervisor is None  # leaf 0x40000000 means nothing then


def test_report_to_dict_is_json() -> None:
    data = json.loads(json.dumps(images.parse_report((CONSOLES / "tiny-tcg.txt").read_text()).to_dict()))
    assert data["hypervisor"] == "QEMU TCG" and "svm" in data["flags"]


def test_missing_report_quotes_the_console_tail() -> None:
    with pytest.raises(images.ReportNotFoundError) as err:
        images.parse_report("Kernel panic - not syncing: VFS: Unable to mount root fs\r\n")
    assert "did not reach its /init" in str(err.value) and "Kernel panic" in str(err.value)
    with pytest.raises(images.ReportNotFoundError, match="console is empty"):
        images.parse_report("")


def test_damaged_report_is_an_error() -> None:
    with pytest.raises(images.ReportNotFoundError, match="not valid JSON"):
        images.parse_report('LABKIT-REPORT {"v":1,"kernel":"6.1\r\nLABKIT-POWEROFF\r\n')


def test_command_cut_short_has_no_status() -> None:
    text = (CONSOLES / "tiny-tcg.txt").read_text().split("LABKIT-COMMAND-END")[0]
    report = images.parse_report(text)
    assert report.command_output.startswith("hello") and report.command_status is None


# --------------------------------------------------------------------------- initramfs


def _members(archive: bytes) -> str:
    """`cpio -itv` of a (possibly multi-member) gzip'd newc archive, as the tool lists it."""
    proc = subprocess.run(["cpio", "-itv", "--quiet"], input=gzip.decompress(archive), capture_output=True,
                          check=True)
    return proc.stdout.decode()


def test_initramfs_layout(guest: images.GuestImage) -> None:
    listing = _members(guest.initrd.read_bytes())
    names = {line.split()[-1] if " -> " not in line else line.split(" -> ")[0].split()[-1]
             for line in listing.splitlines()}
    assert {"init", "bin/busybox", "bin/labkit-cpuid", "bin/sh", "bin/awk", "dev/console"} <= names
    assert "bin/sh -> busybox" in listing
    assert any(line.startswith("crw") and line.endswith("dev/console") for line in listing.splitlines())
    init = next(l for l in listing.splitlines() if l.endswith(" init"))
    assert init.startswith("-rwxr-xr-x")


def test_initramfs_is_content_keyed_and_shared_readable(guest: images.GuestImage) -> None:
    assert images.build_initramfs() == guest.initrd  # same inputs, same file: reused
    assert images.initramfs_key() in guest.initrd.name
    mode = stat.S_IMODE(guest.initrd.stat().st_mode)
    assert mode & 0o044 == 0o044, f"{guest.initrd} is {mode:o}: other users (a shared cache) cannot read it"
    assert images.initramfs_key("true") != images.initramfs_key("false")


def test_command_goes_into_a_second_archive(guest: images.GuestImage) -> None:
    with_command = images.build_initramfs("echo hi")
    data = with_command.read_bytes()
    base = guest.initrd.read_bytes()
    assert data.startswith(base)  # the base is copied, not rebuilt; Linux unpacks both archives in turn
    listing = _members(data[len(base):])
    assert listing.splitlines()[-1].startswith("-rwxr-xr-x") and listing.endswith("labkit/command\n")


def test_empty_command_is_refused() -> None:
    with pytest.raises(InvalidOptionError, match="empty"):
        images.build_initramfs("  ")


def test_cpuid_program_runs_on_this_host() -> None:
    """The guest's CPUID tool is an ordinary x86-64 Linux program: run it here, compare with labkit.host."""
    from labkit import asm

    program = asm.assemble(images._guest_file("cpuid.S"), bits=64, origin=images._CPUID_ORIGIN)
    tool = Path(images.runtime.scratch_dir("test-cpuid")) / "labkit-cpuid"
    try:
        tool.write_bytes(formats.static_elf(program.image, program.origin))
        tool.chmod(0o755)
        out = subprocess.run([str(tool)], capture_output=True, text=True, check=True).stdout
    finally:
        shutil.rmtree(tool.parent)
    regs = host.LiveSource().cpuid(0x40000000)
    assert regs is not None
    expected = b"".join(r.to_bytes(4, "little") for r in regs[1:4]).hex()
    assert out == expected + "\n"


def test_dynamic_busybox_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images.shutil, "which", lambda name: sys.executable if name == "busybox" else None)
    with pytest.raises(images.ImageError, match="busybox-static"):
        images.initramfs_key()


def test_missing_busybox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(images.shutil, "which", lambda name: str(tmp_path / "busybox"))
    with pytest.raises(MissingToolError, match="apt-get install busybox-static"):
        images.initramfs_key()


# --------------------------------------------------------------------------- kernel


def test_guest_kernel_is_found_offline(guest: images.GuestImage) -> None:
    assert guest.kernel.is_file() and guest.kernel_release
    assert guest.cmdline == images.BASE_CMDLINE
    if guest.vmlinux:  # lz4 is installed by setup: the Debian cloud kernel decompresses here
        assert formats.has_pvh_note(guest.vmlinux.read_bytes())


def test_release_and_kind_of_a_bzimage(guest: images.GuestImage) -> None:
    data = guest.kernel.read_bytes()
    if formats.kernel_kind(data) == "bzImage":
        assert formats.kernel_release(data) == guest.kernel_release
    assert formats.kernel_kind(Path(sys.executable).read_bytes()) is None  # an ELF without a PVH note


def test_explicit_kernel_and_environment(guest: images.GuestImage, monkeypatch: pytest.MonkeyPatch) -> None:
    found = images.find_kernel(guest.kernel)
    assert found.release == guest.kernel_release and "given explicitly" in found.source
    monkeypatch.setenv("LABKIT_KERNEL", str(guest.kernel))
    assert "$LABKIT_KERNEL" in images.find_kernel().source


def test_missing_and_wrong_kernel_paths(tmp_path: Path) -> None:
    with pytest.raises(MissingToolError, match="does not exist"):
        images.find_kernel(tmp_path / "vmlinuz")
    (tmp_path / "notes.txt").write_text("not a kernel")
    with pytest.raises(InvalidOptionError, match="neither a bzImage"):
        images.find_kernel(tmp_path / "notes.txt")


def test_no_kernel_anywhere_says_what_to_do(no_host_kernel: None, empty_caches: Path) -> None:
    with pytest.raises(images.ImageError) as err:
        images.find_kernel(fetch=False)
    assert "labkit image build" in err.value.fix and "LABKIT_KERNEL" in err.value.fix


def test_fetch_without_apt(no_host_kernel: None, empty_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(empty_caches))  # no apt-get, no dpkg-deb
    with pytest.raises(MissingToolError, match="Debian/Ubuntu"):
        images.find_kernel()


def test_shared_read_only_cache(guest: images.GuestImage, no_host_kernel: None, empty_caches: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An instructor builds into a shared dir; a student with an empty cache boots from it, building nothing."""
    shared = empty_caches / "shared"
    images.build_initramfs(into=shared)
    folder = shared / "kernels" / "test"
    folder.mkdir(parents=True)
    (folder / "vmlinuz").symlink_to(guest.kernel)
    (folder / "kernel.json").write_text(json.dumps({
        "release": guest.kernel_release, "source": "instructor", "package": "linux-image-test",
        "sha256": "0" * 64, "fetched": 1}))
    monkeypatch.setenv("LABKIT_SHARED_CACHE", str(shared))
    image = images.tiny_guest(fetch=False, progress=False)
    assert image.kernel == folder / "vmlinuz" and image.initrd.is_relative_to(shared)
    assert not (empty_caches / "user" / "labkit" / "images" / "initramfs").exists()
    assert {f.kind for f in images.cache_info()} >= {"kernel", "initramfs"}


def test_build_into_a_shared_cache_copies_the_cached_kernel(guest: images.GuestImage, no_host_kernel: None,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`labkit image build --into DIR` reuses the kernel package this user has: no second download."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get: a download would fail
    shared = tmp_path / "shared"
    kernel = images.find_kernel(into=shared, progress=False)
    assert kernel.path.is_relative_to(shared) and kernel.path.read_bytes() == guest.kernel.read_bytes()
    assert kernel.release == guest.kernel_release and kernel.vmlinux is not None
    assert kernel.vmlinux.read_bytes() == guest.vmlinux.read_bytes()
    assert stat.S_IMODE(kernel.path.stat().st_mode) == 0o644  # students can read it
    assert images.find_kernel(into=shared, fetch=False) == kernel  # found there from now on


# --------------------------------------------------------------------------- CLI


def _labkit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_cli_image_info_json(guest: images.GuestImage) -> None:
    proc = _labkit("image", "info", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["image"]["initrd"] == str(guest.initrd) and data["image"]["cmdline"] == images.BASE_CMDLINE


def test_cli_image_build_bad_kernel(tmp_path: Path) -> None:
    proc = _labkit("image", "build", "--kernel", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "fix:" in proc.stderr


# --------------------------------------------------------------------------- byte formats (labkit.formats)


def test_elf_helpers_on_real_binaries() -> None:
    assert formats.is_dynamic(Path(sys.executable).read_bytes())
    assert not formats.is_dynamic(Path(shutil.which("busybox")).read_bytes())  # busybox-static
    assert formats.elf64_segments(b"not an elf") == [] and not formats.has_pvh_note(b"\x7fELF")


def test_static_elf_needs_a_page_aligned_base() -> None:
    with pytest.raises(ValueError, match="page boundary"):
        formats.static_elf(b"\xc3", 0x400000)
    elf = formats.static_elf(b"\xc3", 0x400000 + formats.ELF_HEADERS)
    assert formats.elf64_segments(elf) == [(formats.PT_LOAD, 0, formats.ELF_HEADERS + 1)]


def test_cpio_newc_header() -> None:
    archive = formats.cpio([("hello", 0o100644, b"hi\n"), ("dev/null", 0o020666, b"1,3")])
    assert archive.startswith(b"070701") and archive.endswith(b"\0") and len(archive) % 4 == 0
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=archive, capture_output=True, check=True).stdout
    assert b"hello" in listing and b"1,   3" in listing and b"crw-rw-rw-" in listing


def test_not_a_bzimage_has_no_vmlinux() -> None:
    assert formats.extract_vmlinux(b"\0" * 4096) is None and formats.kernel_kind(b"\0" * 4096) is None


def test_prune_removes_only_idle_images(tmp_path: Path) -> None:
    """Another checkout's (or version's) image in use right now survives; idle ones beyond the cap go."""
    import time

    old = time.time() - images.PRUNE_MIN_AGE_S - 60

    def make(name: str, mtime: float | None = None) -> Path:
        path = tmp_path / f"tiny-{name}.cpio.gz"
        path.write_bytes(b"x")
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path

    other_busy, other_idle = make("other"), make("otherold", old)
    base = make("mine")
    recent = [make(f"mine-cmd-r{i}", time.time() - i) for i in range(3)]
    idle = [make(f"mine-cmd-o{i}", old - i) for i in range(3)]
    images._prune(tmp_path, "mine", keep=2)
    left = set(tmp_path.iterdir())
    assert other_busy in left and other_idle not in left and base in left
    assert set(recent) <= left  # beyond the cap, but used within the hour
    assert not set(idle) & left
