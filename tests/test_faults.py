"""Fault injection: bad input, a read-only or full cache, and kill -9 at several points of a run.

Every command here runs as a learner runs it (``python -m labkit …`` in a
subprocess) and must end in one clear ``labkit: error:`` with a ``fix:`` and
exit status 2 — never a traceback.  The kill tests assert zero leftovers
*without* running ``labkit cleanup`` where the design promises that (QEMU
dies with its owner, libvirt destroys a dead owner's guest), and that the
next lab process reclaims what only it can (scratch dirs, kernel connection
files, a dead owner's domain definition and log).

Each kill test gives its runs a private ``TMPDIR`` (their own run dir), so
other lab processes of this user on the machine neither see their leftovers
nor reclaim them before the test has looked.  libvirt is only used here, never
stopped: killing a daemon happens in ``test_faults_users.py``, on a
student's private session daemon.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import psutil
import pytest

from conftest import lab_guests
from framework import wait_for
from labkit import images, runtime, virt
from labkit.errors import DiskFullError, InvalidOptionError

TOP = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def guest() -> images.GuestImage:
    return images.tiny_guest(fetch=False, progress=False)


def labkit(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, cwd=TOP,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def assert_clear_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, one ``labkit: error:`` with a ``fix:``, no traceback; returns stderr."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == 2, out
    assert proc.stderr.startswith("labkit: error:") and "\n  fix: " in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    return proc.stderr


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, words", [
    (("boot", "--kernel", "/dev/zero"), ("is a character device",)),
    (("boot", "--kernel", "/dev/null"), ("is a character device",)),
    (("boot", "--kernel", "/tmp"), ("is a directory",)),
    (("boot", "--kernel", "/nonexistent/vmlinuz"), ("does not exist",)),
    (("boot", "--timeout", "0"), ("above 0",)),
    (("boot", "--timeout", "-1"), ("above 0",)),
    (("boot", "--timeout", "soon"), ("not a number",)),
    (("boot", "--vcpus", "64"), (f"only {os.cpu_count()} CPUs", "use 1 to")),
    (("boot", "--vcpus", "0"), ("vcpus=0",)),
    (("boot", "--memory", "1"), ("memory_mib=1",)),
    (("virt", "boot", "--timeout", "0"), ("above 0",)),
    (("virt", "boot", "--vcpus", "64"), (f"only {os.cpu_count()} CPUs",)),
    (("image", "build", "--into", "/etc"), ("not a labkit image cache",)),
    (("image", "build", "--into", "/etc/hostname"), ("a file, not a directory",)),
    (("image", "build", "--into", "/nonexistent/deep/cache"), ("does not exist",)),
    (("host", "--record", "/etc/hostname/record"), ("Not a directory",)),
    (("host", "--record", "/proc/labkit-record"), ("/proc/labkit-record",)),
    (("cleanup", "--cache", "--all-users"), ("your own image cache",)),
])
def test_bad_input_is_one_clear_error(args: tuple[str, ...], words: tuple[str, ...]) -> None:
    assert_clear_error(labkit(*args), *words)


def test_boot_exits_with_the_guest_commands_status(guest: images.GuestImage) -> None:
    """As ``nested run`` does: a script can tell that the guest's command failed."""
    proc = labkit("boot", "--command", "echo seven; exit 7")
    assert proc.returncode == 7 and "Traceback" not in proc.stderr, proc.stderr
    assert "command    exit status 7:\nseven" in proc.stdout, proc.stdout


def test_existing_into_cache_is_accepted(tmp_path: Path) -> None:
    """The --into check refuses foreign directories only: a new one, or a labkit cache, is fine."""
    assert images.check_into(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "cache" / "initramfs").mkdir(parents=True)
    assert images.check_into(tmp_path / "cache") == tmp_path / "cache"


@pytest.mark.parametrize("command", ["doctor", "image info", "cleanup --dry-run"])
def test_output_piped_into_head_ends_quietly(command: str) -> None:
    proc = subprocess.run(f"{sys.executable} -m labkit {command} | head -c 1 >/dev/null; "
                          "echo \"status ${PIPESTATUS[0]}\" >&2", shell=True, executable="/bin/bash",
                          capture_output=True, text=True, cwd=TOP, timeout=120)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] in ("status 0", "status 141"), proc.stderr


def test_domain_spec_types_and_command_line_are_checked(guest: images.GuestImage) -> None:
    with pytest.raises(InvalidOptionError, match="memory_mib='256'"):
        virt.DomainSpec("x", guest.kernel, memory_mib="256").validate()
    with pytest.raises(InvalidOptionError, match="vcpus=True"):
        virt.DomainSpec("x", guest.kernel, vcpus=True).validate()
    with pytest.raises(InvalidOptionError, match="command line is 3000 bytes"):
        virt.DomainSpec("x", guest.kernel, cmdline="x" * 3000).validate()
    with pytest.raises(InvalidOptionError, match=f"only {os.cpu_count()} CPUs"):
        virt.DomainSpec("x", guest.kernel, vcpus=(os.cpu_count() or 1) + 1).validate()


def test_virt_boot_timeout_points_at_nothing_deleted(guest: images.GuestImage) -> None:
    """The error of a guest that ran out of time quotes its console and log: it names no file close() removed."""
    proc = labkit("virt", "boot", "--name", f"tmo-{os.getpid()}", "--timeout", "0.01")
    err = assert_clear_error(proc, "passed before a line starting 'LABKIT-REPORT'")
    named = [word.rstrip(".,:;") for word in err.replace("(", " ").replace(")", " ").split()
             if word.startswith("/") and ("labkit" in word or word.endswith(".log"))]
    assert [path for path in named if not Path(path).exists()] == [], "the error points at files that are gone"


def test_a_guest_side_timeout_speaks_to_a_cli_user(guest: images.GuestImage) -> None:
    err = assert_clear_error(labkit("boot", "--command", "sleep 100", "--timeout", "20"),
                             "did not power off", "labkit boot --timeout S")
    assert "await" not in err  # not the Python API's advice


def test_a_panicking_guest_says_its_kernel_panicked(guest: images.GuestImage) -> None:
    err = assert_clear_error(labkit("boot", "--command", "echo c > /proc/sysrq-trigger"),
                             "the guest's kernel panicked", "sysrq triggered crash", "Kernel panic - not syncing")
    assert "report a bug" not in err and "not valid JSON" not in err


# --------------------------------------------------------------------------- a read-only or full cache


@pytest.fixture
def tmpfs(tmp_path: Path) -> Callable[..., Path]:
    """Mount a small tmpfs (root: CI runs as root); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mounts = []

    def mount(name: str, options: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "labkit-test", str(path)], check=True)
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _shared(guest: images.GuestImage) -> str:
    """The cache the suite's image lives in, offered read-only as an instructor's shared cache."""
    return str(guest.kernel.parent.parent.parent)


def test_read_only_cache_is_a_clear_error(guest: images.GuestImage, tmpfs) -> None:
    cache = tmpfs("ro-cache", "ro,size=1m")
    env = {"XDG_CACHE_HOME": str(cache), "LABKIT_SHARED_CACHE": ""}
    assert_clear_error(labkit("image", "build", "--quiet", env=env), "Read-only file system", "XDG_CACHE_HOME")
    info = labkit("image", "info", env=env)  # reading needs no writing: no kernel here, and it says so
    assert_clear_error(info, "no kernel for the tiny guest")
    # with an instructor's shared cache, a read-only own cache still boots; a new command's image cannot be built
    shared = {**env, "LABKIT_SHARED_CACHE": _shared(guest)}
    listed = labkit("image", "info", "--json", env=shared)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert_clear_error(labkit("boot", "--command", f"echo {time.time_ns()}", env=shared), "Read-only file system",
                       "XDG_CACHE_HOME")


def test_full_cache_with_labkit_kernel_says_disk_full(guest: images.GuestImage, tmpfs) -> None:
    cache = tmpfs("full-cache", "size=512k")
    env = {"XDG_CACHE_HOME": str(cache), "LABKIT_SHARED_CACHE": "", "LABKIT_KERNEL": str(guest.kernel)}
    err = assert_clear_error(labkit("image", "build", "--quiet", env=env), "no space left")
    assert "network" not in err and "archive" not in err and "cleanup --cache" in err


def test_full_cache_without_labkit_kernel_does_not_blame_the_network(guest: images.GuestImage, tmpfs) -> None:
    cache = tmpfs("full-cache", "size=512k")
    env = {"XDG_CACHE_HOME": str(cache), "LABKIT_SHARED_CACHE": _shared(guest)}
    # a command no cache holds an image for (other runs on this host may have cached "true")
    err = assert_clear_error(labkit("boot", "--command", f"echo {time.time_ns()}", env=env), "no space left")
    assert "network" not in err and "archive" not in err


def test_a_full_run_dir_names_itself_and_the_variable_that_chose_it(guest: images.GuestImage, tmpfs) -> None:
    """Not the image cache's advice: the run dir's full path, `labkit cleanup`, and XDG_RUNTIME_DIR."""
    runtime_dir = tmpfs("xdg-runtime", "size=64k,mode=0700")
    with open(runtime_dir / "filler", "wb") as fill, pytest.raises(OSError, match="No space left"):
        fill.write(b"\0" * (128 << 10))  # fills it
    err = assert_clear_error(labkit("boot", env={"XDG_RUNTIME_DIR": str(runtime_dir)}),
                             f"no space left in labkit's run dir {runtime_dir / 'labkit'}", "labkit cleanup",
                             f"XDG_RUNTIME_DIR={runtime_dir} chose it")
    assert "XDG_CACHE_HOME" not in err and "--cache" not in err
    assert list((runtime_dir / "labkit").iterdir()) == []  # the failed boot's scratch dir went with it


def test_apt_out_of_space_is_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """apt-get download into a full cache: apt's own words, and a fix about space (apt stands in for the network)."""
    fake = tmp_path / "apt-get"
    fake.write_text("#!/bin/sh\necho 'E: Write error - write (28: No space left on device)' >&2\nexit 100\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(DiskFullError) as err:
        images.fetch_kernel(into=tmp_path, progress=False)
    assert "disk is full" in err.value.what
    assert "archive" not in err.value.fix and "LABKIT_KERNEL" in err.value.fix


def test_corrupt_cache_is_refused_with_the_force_fix(guest: images.GuestImage, tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path), "LABKIT_SHARED_CACHE": "", "LABKIT_KERNEL": str(guest.kernel)}
    assert labkit("image", "build", "--quiet", env=env).returncode == 0
    initrd = next((tmp_path / "labkit" / "images" / "initramfs").glob("tiny-*.cpio.gz"))
    initrd.write_bytes(initrd.read_bytes()[:1000])
    assert_clear_error(labkit("boot", env=env), "damaged", "labkit image build --force")
    doctor = {c["name"]: c for c in json.loads(labkit("doctor", "--json", env=env).stdout)["checks"]}
    assert doctor["guest image"]["status"] == "fail" and "damaged" in doctor["guest image"]["detail"]
    assert doctor["guest image"]["fix"].startswith("labkit image build --force")
    assert labkit("image", "build", "--force", "--quiet", env=env).returncode == 0
    assert labkit("boot", env=env).returncode == 0


def test_cache_size_cap_and_cleanup_cache_from_the_cli(guest: images.GuestImage, tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path), "LABKIT_SHARED_CACHE": "", "LABKIT_KERNEL": str(guest.kernel),
           images.CACHE_MAX_ENV: "64"}
    assert labkit("image", "build", "--command", "echo one", "--quiet", env=env).returncode == 0
    info = labkit("image", "info", env=env)
    assert info.returncode == 0 and "MiB of at most 64 MiB" in info.stdout, info.stdout + info.stderr
    initramfs = tmp_path / "labkit" / "images" / "initramfs"
    for path in initramfs.iterdir():  # idle for a while: nothing is using them
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    cleared = labkit("cleanup", "--cache", "--json", env=env)
    assert cleared.returncode == 0, cleared.stderr
    assert len(json.loads(cleared.stdout)["removed"]) >= 2 and not list(initramfs.glob("*.cpio.gz"))
    assert_clear_error(labkit("image", "info", env={**env, images.CACHE_MAX_ENV: "0"}), "at least 1 MiB")


# --------------------------------------------------------------------------- kill -9


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A private dir right under /tmp: a run dir deep in pytest's tmp_path leaves a kernel's Unix socket path no
    room (107 bytes), and labkit's kernels then fall back to TCP (labkit.jupyter)."""
    path = Path(tempfile.mkdtemp(prefix="kvmlab-t-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def isolated_env(tmp: Path) -> dict[str, str]:
    """A private TMPDIR (so a private run dir) for a run this test kills."""
    return {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}


def run_dir_in(env: dict[str, str]) -> Path:
    return Path(env["TMPDIR"]) / runtime.prefix().rstrip("-")


def domain_active(conn: virt.Connection, name: str) -> bool:
    """Whether the domain ``name`` exists and runs: one lookup, so a domain undefined meanwhile (another
    test worker's reclaim of a dead owner's domain, by design) reads as not running, never as an error."""
    try:
        return bool(conn.raw.lookupByName(name).isActive())
    except libvirt.libvirtError:
        return False


def qemus_named(fragment: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        name = virt.qemu_name(proc.info["cmdline"] or [])
        if name is not None and fragment in name:
            found.append(proc)
    return found


def reclaim_in(env: dict[str, str]) -> None:
    """The next lab process of this user starting (its first scratch dir reclaims dead processes' ones)."""
    subprocess.run([sys.executable, "-c", "from labkit import runtime; import shutil; "
                    "shutil.rmtree(runtime.scratch_dir('next'))"], env=env, check=True, cwd=TOP, timeout=60)


@pytest.mark.parametrize("point", ["starting", "qemu running", "command running"])
def test_kill_labkit_boot(guest: images.GuestImage, short_tmp: Path, point: str) -> None:
    env = isolated_env(short_tmp)
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "boot", "--console", "--command", "sleep 60"],
                            cwd=TOP, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    label = f"{runtime.prefix()}tiny-{proc.pid}-"
    if point == "starting":  # its scratch dir made, QEMU perhaps not yet
        wait_for(lambda: list(run_dir_in(env).glob(f"*-{proc.pid}-*")), what="labkit boot's scratch dir")
    else:
        wait_for(lambda: qemus_named(label), what="QEMU")
    if point == "command running":
        seen: list[str] = []
        threading.Thread(target=lambda: seen.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True).start()
        wait_for(lambda: images.COMMAND_BEGIN in "".join(seen), what="the guest's command")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not qemus_named(label), timeout=10, what="QEMU to die with its owner")  # no cleanup ran
    reclaim_in(env)
    assert not list(run_dir_in(env).glob(f"*-{proc.pid}-*")), "the next start did not reclaim the scratch dir"


@pytest.mark.parametrize("point", ["created", "reporting"])
def test_kill_labkit_virt_boot(guest: images.GuestImage, short_tmp: Path, point: str) -> None:
    env = isolated_env(short_tmp)
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "virt", "boot", "--name", f"kill{point[:3]}"],
                            cwd=TOP, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    name = f"{runtime.prefix()}kill{point[:3]}-{proc.pid}"
    with virt.connect() as conn:
        wait_for(lambda: name in conn.domains(), what=f"domain {name}")
        if point == "reporting":
            wait_for(lambda: any(l.startswith(images.REPORT_MARKER) for p in run_dir_in(env).glob("virt-*")
                                 for l in (p / "console.log").read_text(errors="replace").splitlines()
                                 if (p / "console.log").exists()), what="the guest's report")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # libvirt destroys a dead owner's guest (autodestroy); a transient domain leaves no definition
        wait_for(lambda: name not in conn.domains() and not virt.qemu_pids(name), timeout=20,
                 what="libvirt to remove the dead owner's domain")
        conn.reclaim()  # what the next define does first
    assert not virt.qemu_log_path(virt.choose_uri().uri, name).exists()
    reclaim_in(env)
    assert not list(run_dir_in(env).glob(f"*-{proc.pid}-*"))


NOTEBOOK_CELL = "import time\nfrom labkit import images, qemu, virt\n" + lab_guests("nb") + "time.sleep(600)\n"


def test_kill_a_papermill_run(guest: images.GuestImage, short_tmp: Path, tmp_path: Path) -> None:
    """A notebook run killed mid-cell: its kernel notices, QEMU and the libvirt guest go with it; the next
    start reclaims its scratch dirs, domain definition and the kernel's connection file."""
    import nbformat
    notebook = tmp_path / "kill.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CELL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebook)
    env = isolated_env(short_tmp)
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "run", str(notebook), "--out", str(tmp_path / "out"),
                             "--no-progress"], cwd=TOP, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    kernel = wait_for(lambda: next((p for p in psutil.Process(proc.pid).children(recursive=True)
                                    if "ipykernel" in " ".join(p.cmdline())), None), what="the kernel")
    domain = f"{runtime.prefix()}nb-{kernel.pid}"
    with virt.connect() as conn:
        wait_for(lambda: domain_active(conn, domain), timeout=120,
                 what="the notebook's domain")
        qemu_label = f"{runtime.prefix()}nb-{kernel.pid}-"
        assert qemus_named(qemu_label)
        conn_files = list(run_dir_in(env).glob(f"kernel-{proc.pid}-*/kernel.json"))
        assert conn_files, "papermill's kernel connection file (in the run's scratch dir)"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # without any cleanup: the kernel ends (its parent is gone), and takes its QEMU and running guest along
        wait_for(lambda: not kernel.is_running() or kernel.status() == psutil.STATUS_ZOMBIE, timeout=30,
                 what="the kernel to exit")
        wait_for(lambda: not qemus_named(qemu_label) and not virt.qemu_pids(domain)
                 and not domain_active(conn, domain), timeout=20,
                 what="QEMU and the libvirt guest to end with the kernel")
        # the next start: a new domain's define reclaims the definition, a new scratch dir the dirs (the
        # connection file is in the run's scratch dir)
        conn.reclaim()  # the dead kernel's domain goes (or another worker's reclaim took it already)
        assert domain not in conn.domains()
    reclaim_in(env)
    assert not list(run_dir_in(env).glob(f"*-{kernel.pid}-*"))
    assert not any(p.exists() for p in conn_files)  # they went with the dead run's scratch dir
    empty = tmp_path / "empty.ipynb"
    nbformat.write(nbformat.v4.new_notebook(metadata=nb.metadata), empty)
    again = subprocess.run([sys.executable, "-m", "labkit", "run", str(empty), "--out", str(tmp_path / "out"),
                            "--no-progress"], cwd=TOP, env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert not any(p.exists() for p in conn_files)
