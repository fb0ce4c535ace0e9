"""labkit.images: the tiny guest's kernel, initramfs, cache and report line (no boots here)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES
from labkit import formats, host, images, runtime
from labkit.errors import InvalidOptionError, MissingToolError
from labkit.images import cache as imagecache

CONSOLES = FIXTURES / "consoles"


@pytest.fixture(scope="module")
def guest() -> images.GuestImage:
    """The image setup.sh built (never downloads: fetch=False)."""
    return images.tiny_guest(fetch=False, progress=False)


@pytest.fixture
def no_host_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this host has no readable /boot kernel and no $LABKIT_KERNEL."""
    monkeypatch.delenv("LABKIT_KERNEL", raising=False)
    monkeypatch.setattr(images.guest_kernel.platform, "release", lambda: "0.0.0-labkit-test-none")


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


def test_report_says_how_long_init_worked_by_the_guests_clock() -> None:
    text = (CONSOLES / "tiny-tcg.txt").read_text()
    assert images.parse_report(text).init_s is None  # an /init from before report_uptime_s: unknown, not 0
    newer = images.parse_report(text.replace('"uptime_s":1.26,', '"uptime_s":1.26,"report_uptime_s":1.31,'))
    assert newer.report_uptime_s == 1.31 and newer.init_s == pytest.approx(0.05)


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
        images.parse_report("Linux version 6.1\r\nRun /init as init process\r\n")
    assert "did not reach its /init" in str(err.value) and "Run /init" in str(err.value)
    with pytest.raises(images.ReportNotFoundError, match="console is empty"):
        images.parse_report("")


def test_a_panic_is_named_a_panic_with_its_console() -> None:
    with pytest.raises(images.GuestPanicError, match="kernel panicked: not syncing: VFS") as err:
        images.parse_report("[    1.2] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n")
    assert "report a bug" not in str(err.value)
    report = (CONSOLES / "tiny-tcg.txt").read_text().split("LABKIT-COMMAND-END")[0]
    with pytest.raises(images.GuestPanicError, match="sysrq triggered crash") as err:  # the command crashed it
        images.parse_report(report + "[    2.0] sysrq: Trigger a crash\r\n"
                            "[    2.0] Kernel panic - not syncing: sysrq triggered crash\r\n")
    assert "sysrq: Trigger a crash" in str(err.value) and "echo c > /proc/sysrq-trigger" in err.value.fix
    # the words alone in a command's output that finished are no panic
    done = images.parse_report((CONSOLES / "tiny-tcg.txt").read_text().replace(
        "hello", "Kernel panic - not syncing: just words"))
    assert done.command_status is not None


def test_nonce_decides_which_markers_count() -> None:
    token = images.nonce()
    assert len(token) == 16 and token != images.nonce()
    real = (CONSOLES / "tiny-tcg.txt").read_text()
    line = next(l for l in real.splitlines() if l.startswith(images.REPORT_MARKER))
    body = line[len(images.REPORT_MARKER):]
    forged = ("LABKIT-REPORT {\"v\": 2}\n" + images.report_prefix(token) + body + "\n"
              f"{images.COMMAND_BEGIN} {token}\n" "line one\n" f"{images.COMMAND_END} 0\n"
              "more\n" f"{images.COMMAND_END} ffffffffffffffff 0\n" f"{images.COMMAND_END} {token} 3\n")
    report = images.parse_report(forged, token)
    assert report.command_status == 3
    assert report.command_output == f"line one\n{images.COMMAND_END} 0\nmore\n{images.COMMAND_END} ffffffffffffffff 0\n"
    assert images.parse_report(forged[forged.index("\n") + 1:]).cpus == report.cpus  # no token: old reading
    with pytest.raises(images.ReportNotFoundError, match="not valid"):  # ... which the first line fools
        images.parse_report(forged)


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


def test_initramfs_is_content_keyed(guest: images.GuestImage) -> None:
    assert images.build_initramfs() == guest.initrd  # same inputs, same file: reused
    assert images.initramfs_key() in guest.initrd.name
    assert images.initramfs_key("true") != images.initramfs_key("false")


def test_user_cache_is_private_and_a_shared_one_readable(guest: images.GuestImage, empty_caches: Path) -> None:
    """A guest command may hold a secret: the user's cache is 0700/0600; what --into builds is for everyone."""
    mine = images.build_initramfs("echo secret")
    for path in (mine, mine.parent, images.user_cache(), images.user_cache().parent):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {mode:o}: other users can read it"
    shared = images.build_initramfs("echo hello", into=empty_caches / "shared")
    for path in (shared, shared.parent):
        assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, path


def test_an_old_world_readable_cache_is_tightened(guest: images.GuestImage, empty_caches: Path) -> None:
    built = images.build_initramfs("true")
    built.chmod(0o644)
    built.parent.chmod(0o755)
    images.build_initramfs("false")  # any later build under the cache's lock
    assert stat.S_IMODE(built.stat().st_mode) == 0o600 and stat.S_IMODE(built.parent.stat().st_mode) == 0o700


def test_a_damaged_cached_image_is_refused_until_rebuilt(guest: images.GuestImage, empty_caches: Path) -> None:
    built = images.build_initramfs("echo hi")
    data = built.read_bytes()
    built.write_bytes(data[: len(data) // 2])  # truncated, as a full disk leaves it
    with pytest.raises(images.CorruptCacheError) as err:
        images.build_initramfs("echo hi")
    assert "labkit image build --force" in err.value.fix and str(built) in err.value.what
    damaged = {f.path: f.damaged for f in images.cache_info()}
    base = next(p for p in damaged if "-cmd-" not in p.name and p.name.startswith("tiny-"))
    assert damaged[built] and "damaged" in damaged[built] and damaged[base] is None  # image info says so
    assert images.build_initramfs("echo hi", rebuild=True).read_bytes() == data
    assert images.build_initramfs("echo hi") == built


#: A new process verifying one cached file: how many times it hashed (0: it trusted the .verified record).
HASHES_IN_A_NEW_PROCESS = """
import hashlib, sys
from pathlib import Path
from labkit.images import cache
real, calls = hashlib.sha256, []
hashlib.sha256 = lambda *args: calls.append(1) or real(*args)
try:
    cache.verified(Path(sys.argv[1]))
except cache.CorruptCacheError:
    print("damaged")
else:
    print(len(calls))
"""


def test_an_unchanged_cached_file_is_hashed_once_for_all_processes(empty_caches: Path) -> None:
    """The 53 MB vmlinux took 53 ms to hash here and 2.4 s inside the emulated AMD-V machine, in every process
    that booted; the user's cache now records the file that matched, and a file written to is hashed again."""
    built = imagecache.publish(b"an image", imagecache.user_cache() / "initramfs" / "tiny-x.cpio.gz")

    def hashes() -> str:
        return subprocess.run([sys.executable, "-c", HASHES_IN_A_NEW_PROCESS, str(built)], capture_output=True,
                              text=True, check=True, env=os.environ).stdout.strip()

    assert hashes() == "0"  # publish hashed the data it wrote
    built.write_bytes(b"an image")  # the same bytes, written again: another file as far as anyone can tell
    assert hashes() == "1" and hashes() == "0"
    built.write_bytes(b"an imag")  # truncated, as a full disk leaves it
    assert hashes() == "damaged" == hashes()
    imagecache.drop(built)
    assert not list(built.parent.iterdir())  # the image, its .sha256 and its .verified
    shared = imagecache.publish(b"an image", empty_caches / "shared" / "initramfs" / "tiny-x.cpio.gz")
    assert not imagecache.verified_file(shared).exists()  # an instructor's cache: nothing recorded in it


def test_a_damaged_shared_cache_names_the_instructors_fix(guest: images.GuestImage, empty_caches: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    shared = empty_caches / "shared"
    built = images.build_initramfs("echo hi", into=shared)
    built.write_bytes(b"\x1f\x8b truncated")
    monkeypatch.setenv("LABKIT_SHARED_CACHE", str(shared))
    with pytest.raises(images.CorruptCacheError) as err:
        images.build_initramfs("echo hi")
    assert f"labkit image build --force --into {shared}" in err.value.fix and "instructor" in err.value.fix


def test_a_damaged_cached_kernel_is_refused_and_force_fetches_it_again(
        guest: images.GuestImage, no_host_kernel: None, empty_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(empty_caches))  # no apt-get: nothing is downloaded here
    monkeypatch.setenv("LABKIT_SHARED_CACHE", str(guest.kernel.parent.parent.parent))  # copied from there
    kernel = images.find_kernel(into=images.user_cache(), progress=False)
    monkeypatch.setenv("LABKIT_SHARED_CACHE", "")
    data = kernel.path.read_bytes()
    kernel.path.write_bytes(data[:4096])
    with pytest.raises(images.CorruptCacheError, match="damaged") as err:
        images.tiny_guest(fetch=False, progress=False)
    assert "labkit image build --force" in err.value.fix
    with pytest.raises(MissingToolError, match="apt-get"):  # --force drops it and fetches the package again
        images.tiny_guest(rebuild=True, progress=False)
    assert not kernel.path.parent.exists()


def test_cache_is_capped_least_recently_used_first(guest: images.GuestImage, empty_caches: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A cap of 3 MiB holds about two command images: older unused ones go, one used a moment ago stays."""
    import time
    monkeypatch.setenv(images.CACHE_MAX_ENV, "3")
    old = time.time() - images.PRUNE_MIN_AGE_S - 60
    first = images.build_initramfs("echo 1")
    for path in first.parent.iterdir():  # everything so far: idle for a while
        os.utime(path, (old, old))
    second = images.build_initramfs("echo 2")
    third = images.build_initramfs("echo 3")
    assert not first.exists() and not imagecache.sum_file(first).exists()  # least recently used: gone
    assert second.exists() and third.exists()  # used within the last minute: kept even over the cap
    assert images.cache_size() == sum(f.stat().st_size for f in images.user_cache().rglob("*")
                                      if f.is_file() and f.name != ".lock")
    monkeypatch.setenv(images.CACHE_MAX_ENV, "lots")
    with pytest.raises(InvalidOptionError, match=images.CACHE_MAX_ENV):
        images.build_initramfs("echo 4")


def test_nothing_is_pruned_while_an_emulated_machine_reads_the_cache(guest: images.GuestImage, empty_caches: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """L1 sees the host's cache (labkit.nested holds images.reading for its life): an image L1 found stays,
    even idle and over the cap, until it is gone; then the next build prunes (seen: Errno 116 inside L1)."""
    import time
    monkeypatch.setenv(images.CACHE_MAX_ENV, "3")
    old = time.time() - images.PRUNE_MIN_AGE_S - 60
    first = images.build_initramfs("echo 1")
    for path in first.parent.iterdir():
        os.utime(path, (old, old))
    with images.reading(images.user_cache()):
        images.build_initramfs("echo 2")
        images.build_initramfs("echo 3")
        assert first.exists()
    images.build_initramfs("echo 4")
    assert not first.exists()


def test_clear_cache_keeps_what_is_in_use(guest: images.GuestImage, empty_caches: Path) -> None:
    import time
    idle, busy = images.build_initramfs("echo idle"), images.build_initramfs("echo busy")
    old = time.time() - images.PRUNE_MIN_AGE_S - 60
    for path in (idle, imagecache.sum_file(idle)):
        os.utime(path, (old, old))
    gone, freed = images.clear_cache()
    assert idle in gone and not idle.exists() and busy.exists() and freed >= len(b"echo idle")


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

    program = asm.assemble((images.GUEST_SOURCES / "cpuid.S").read_text(), bits=64,
                           origin=images.initramfs.CPUID_ORIGIN)
    tool = Path(runtime.scratch_dir("test-cpuid")) / "labkit-cpuid"
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
    monkeypatch.setattr(images.initramfs.shutil, "which", lambda name: sys.executable if name == "busybox" else None)
    with pytest.raises(images.ImageError, match="busybox-static"):
        images.initramfs_key()


def test_missing_busybox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(images.initramfs.shutil, "which", lambda name: str(tmp_path / "busybox"))
    with pytest.raises(MissingToolError, match="apt-get install busybox-static"):
        images.initramfs_key()


# --------------------------------------------------------------------------- kernel


def test_guest_kernel_is_found_offline(guest: images.GuestImage) -> None:
    assert guest.kernel.is_file() and guest.kernel_release
    assert guest.cmdline == images.BASE_CMDLINE
    assert guest.vmlinux, "lz4 is installed by setup: the Debian cloud kernel decompresses here"
    assert formats.has_pvh_note(guest.vmlinux.read_bytes())


def test_release_and_kind_of_a_bzimage(guest: images.GuestImage) -> None:
    data = guest.kernel.read_bytes()
    assert formats.kernel_kind(data) == "bzImage"  # the Debian cloud kernel, as its package ships it
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
        "sha256": hashlib.sha256(guest.kernel.read_bytes()).hexdigest(), "fetched": 1}))
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


def test_poweroff_counts_only_after_the_nonced_lines_a_command_cannot_print() -> None:
    report = 'LABKIT-REPORT 0123456789abcdef {"v":1}\r\n'
    assert images.poweroff_announced(report + "LABKIT-POWEROFF\r\n", "0123456789abcdef")
    assert not images.poweroff_announced(report, "0123456789abcdef")  # not yet said
    assert not images.poweroff_announced(report + "LABKIT-POWEROFF\r\n", "fedcba9876543210")  # another boot's
    # the learner's command printed the marker itself, and still runs: no end line after it
    spoof = report + "LABKIT-COMMAND-BEGIN 0123456789abcdef\nLABKIT-POWEROFF\n"
    assert images.poweroff_announced(spoof, "0123456789abcdef") is False
    done = spoof + "LABKIT-COMMAND-END 0123456789abcdef 0\nLABKIT-POWEROFF\n"
    assert images.poweroff_announced(done, "0123456789abcdef")
