"""``labkit nested``: the emulated AMD-V machine (L1), its errors, its release of everything — and the
lab's hardware-KVM path, tested inside two L1 boots (``tests/nested/``, ``test_nested_inside_{kvm,qemu}.py``).

The live tests boot real L1 machines (QEMU/TCG with an emulated SVM CPU, virtiofsd, the cloud kernel's
kvm_amd): a few seconds each; the two inside-L1 pytest runs take minutes.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import students
from framework import TOP, labkit_nested
from labkit import cleanup, images, runtime
from labkit.errors import InvalidOptionError, MissingToolError
from labkit.nested import NestedError, job, machine, modules

pytestmark = pytest.mark.nested


def children_of(pid: int) -> list[str]:
    """Names of the processes an L1 run started (QEMU, virtiofsd), found by their command lines."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        if argv and (any(f"nested-{pid}-" in a for a in argv)):
            found.append(Path(argv[0]).name)
    return found


def scratch_of(pid: int) -> list[Path]:
    run_dir = runtime.run_dir_of()
    return [p for p in run_dir.glob(f"*-{pid}-*")] if run_dir.is_dir() else []


# --------------------------------------------------------------------------- the job, without booting


def test_job_script_runs_the_command_as_the_caller_where_they_are() -> None:
    env = job.environment({"PATH": "/usr/bin:/bin", "HOME": "/home/stu", "LABKIT_X": "1", "LC_ALL": "C",
                           "SECRET_TOKEN": "no", "LANG": "C.UTF-8"})
    assert env == {"PATH": "/usr/bin:/bin", "HOME": "/home/stu", "LABKIT_X": "1", "LC_ALL": "C",
                   "LANG": "C.UTF-8"}
    text = job.script(["labkit", "host", "it's"], env, Path("/work/lab"), uid=1000, gid=1000)
    assert "cd /work/lab\n" in text
    assert "/usr/bin/env -i HOME=/home/stu LABKIT_X=1 LANG=C.UTF-8 LC_ALL=C PATH=/usr/bin:/bin" in text
    assert "/usr/bin/setpriv --reuid=1000 --regid=1000" in text and text.endswith(" labkit host 'it'\"'\"'s'\n")
    as_root = job.script(["true"], env, Path("/"), uid=0, gid=0)
    assert "setpriv" not in as_root and "setsid" not in as_root
    shell = job.script(["/bin/bash", "-i"], env, Path("/"), uid=0, gid=0, terminal=(40, 120))
    assert "stty rows 40 cols 120" in shell and "/usr/bin/setsid --ctty --wait /bin/sh -c " in shell
    # the shell's session leader drains the terminal before it exits (its exit hangs up the serial port)
    assert shlex.quote(job.DRAINING_SESSION_LEADER) + " sh /usr/bin/env -i" in shell
    assert shell.endswith(" /bin/bash -i\n")


def test_command_not_found_is_refused_before_booting() -> None:
    started = time.monotonic()
    proc = labkit_nested("run", "--", "no-such-program-here")
    assert proc.returncode == 2 and "labkit: error: 'no-such-program-here' is not a program L1 can run" in proc.stderr
    assert "fix:" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - started < 60  # refused up front, not after a boot (generous: a loaded host)
    empty = labkit_nested("run")
    assert empty.returncode == 2 and "no command to run" in empty.stderr


def test_memory_limits_are_clear_errors() -> None:
    small = labkit_nested("run", "--memory", "256", "--", "true")
    assert small.returncode == 2 and "L1 needs at least 1024 MiB" in small.stderr and "fix:" in small.stderr
    huge = labkit_nested("run", "--memory", str(10**8), "--", "true")
    assert huge.returncode == 2 and "too little memory" in huge.stderr and "Traceback" not in huge.stderr


def test_missing_qemu_or_virtiofsd_and_wrong_architecture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(machine, "VIRTIOFSD_PATHS", (str(tmp_path / "virtiofsd"),))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="qemu-system-x86_64"):
        machine.check_host(2048, 2)
    monkeypatch.setattr(machine.qemu, "qemu_binary", lambda *a: "/usr/bin/qemu-system-x86_64")
    with pytest.raises(MissingToolError, match="virtiofsd is not installed") as err:
        machine.check_host(2048, 2)
    assert "qemu-system-common" in (err.value.fix or "")
    monkeypatch.setattr(machine.platform, "machine", lambda: "aarch64")
    with pytest.raises(NestedError, match="aarch64, not x86-64"):
        machine.check_host(2048, 2)


def test_bad_vcpus() -> None:
    with pytest.raises(InvalidOptionError, match="vcpus=0"):
        machine.check_host(2048, 0)


def test_kernel_package_without_kvm_amd(tmp_path: Path) -> None:
    """A kernel package whose kvm-amd is missing: the error names it (a .deb made here with dpkg-deb)."""
    release = "6.1.0-99-test"
    root = tmp_path / "pkg"
    for rel in ("arch/x86/kvm/kvm.ko", "virt/lib/irqbypass.ko", "fs/fuse/fuse.ko"):
        path = root / f"lib/modules/{release}/kernel/{rel}"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"\x7fELF module " + rel.encode())
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text("Package: linux-image-test\nVersion: 1\nArchitecture: amd64\n"
                                         "Maintainer: lab <lab@example.org>\nDescription: test\n")
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", str(root), str(tmp_path / "k.deb")], check=True,
                   capture_output=True)
    found = modules._unpack(tmp_path / "k.deb", release)
    assert found["kvm"] == b"\x7fELF module arch/x86/kvm/kvm.ko" and set(found) == {"kvm", "irqbypass", "fuse"}
    with pytest.raises(NestedError, match=r"linux-image-test 1 has no .*kvm-amd\.ko") as err:
        modules.require_all(found, "linux-image-test 1")
    assert "KVM_AMD" in (err.value.fix or "")


def test_a_kernel_not_from_a_package_is_refused(tmp_path: Path) -> None:
    kernel = images.Kernel(tmp_path / "vmlinuz", "6.1", "given explicitly", "0" * 64, None)
    with pytest.raises(NestedError, match="not one labkit fetched from a package"):
        modules.package_of(kernel)


def test_modules_are_cached_next_to_the_kernel() -> None:
    kernel = images.find_kernel(progress=False)
    folder = modules.kernel_modules(kernel)
    assert folder == modules.cached_modules(kernel) and folder.parent.name == kernel.sha256[:16]
    assert {p.stem for p in folder.glob("*.ko")} >= set(modules.MODULES)


def test_prepare_leaves_nothing_to_download(tmp_path: Path) -> None:
    """After `labkit nested prepare` (setup runs it), L1's files come from the cache: no apt-get needed."""
    assert labkit_nested("prepare").returncode == 0
    bare = tmp_path / "bin"  # PATH without apt-get or dpkg-deb: a download would fail
    bare.mkdir()
    for tool in ("uname", "sh"):
        (bare / tool).symlink_to(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip())
    again = labkit_nested("prepare", env={"PATH": str(bare)})
    assert again.returncode == 0, again.stderr
    initrd = Path(again.stdout.split()[-1])
    assert initrd.is_file() and initrd.name.startswith("nested-")


# --------------------------------------------------------------------------- live L1 runs


def test_run_streams_output_as_the_caller_where_they_are_and_exits_with_its_status(tmp_path: Path) -> None:
    """One L1 boot for what every `nested run` promises: the command runs as the caller, in their directory (a
    checkout or notebook under /tmp works), with their LABKIT_* variables and no others; it sees AMD-V on one
    vCPU; the host's lab run dir is empty in L1 and writes stay in L1; stdout and stderr stream apart; its
    status is the exit status."""
    (tmp_path / "marker").write_text("seen in L1\n")
    script = ("cat marker; echo err >&2; id -u; pwd; echo \"$LABKIT_PROBE|$SECRET_PROBE\"; grep -c svm /proc/cpuinfo; "
              "ls -A \"$1\"; touch written-inside; exit 7")
    with runtime.scratch("probe") as mine:  # the host's run dir is not empty
        proc = subprocess.run([sys.executable, "-m", "labkit", "nested", "run", "--times", "--", "sh", "-c", script,
                               "sh", str(mine.parent)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "LABKIT_PROBE": "passed in", "SECRET_PROBE": "kept out"})
    lines = proc.stdout.splitlines()
    assert proc.returncode == 7, proc.stderr
    assert lines[:4] == ["seen in L1", str(os.getuid()), str(tmp_path), "passed in|"], proc.stdout
    # one CPU with svm (L1's default: one vCPU, machine.DEFAULT_VCPUS); nothing listed in the run dir
    assert int(lines[4]) == 1 and lines[5:] == [], proc.stdout
    assert proc.stderr.startswith("err\n") and '"ready_s"' in proc.stderr and '"status": 7' in proc.stderr
    assert not (tmp_path / "written-inside").exists()


def test_a_command_past_its_timeout_is_stopped_with_a_clear_error() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "nested", "run", "--timeout", "8", "--", "sh", "-c",
                             "echo started; exec sleep 600"], cwd=TOP, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "labkit: error: the command did not end within 8 s inside L1" in err, err
    assert "fix:" in err and "Traceback" not in err
    assert out == "started\n"  # what it printed before it was stopped
    assert children_of(proc.pid) == [] and scratch_of(proc.pid) == []


def test_shell_is_interactive_and_returns_the_shells_status() -> None:
    """The shell's last output arrives: its session ends only once L1's serial terminal has sent it all (a
    session leader's exit hangs up the terminal, and a UART's hangup drops what it has not sent)."""
    # seq: the shell exits with kilobytes still in the UART's buffer (without the drain, its tail was lost)
    proc = labkit_nested("shell", stdin="echo inside-$((6*7)); seq 1000; exit 5\n", env={"SHELL": "/bin/sh"})
    assert proc.returncode == 5, proc.stderr
    output = "inside-42\n" + "".join(f"{i}\n" for i in range(1, 1001))  # after the echoed input and a prompt
    assert output in proc.stdout.replace("\r\n", "\n"), proc.stdout[-500:]


def default_sigint() -> None:
    """In the child: Ctrl-C as in a learner's shell, however pytest was started (a background job ignores
    SIGINT, and what it starts inherits that: Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_nothing_outlives_an_interrupted_or_killed_run(how: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "nested", "run", "--", "sleep", "600"], cwd=TOP,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while sorted(set(children_of(proc.pid))) != ["qemu-system-x86_64", "virtiofsd"]:
        assert time.monotonic() < deadline and proc.poll() is None, (children_of(proc.pid), proc.communicate())
        time.sleep(0.2)
    time.sleep(2)  # L1 is booting or running the command
    proc.send_signal(how)
    _, err = proc.communicate(timeout=300)  # what ends is what counts here, not how fast (a loaded host is slow)
    deadline = time.monotonic() + 10
    while children_of(proc.pid) and time.monotonic() < deadline:  # PDEATHSIG is delivered asynchronously
        time.sleep(0.1)
    assert children_of(proc.pid) == [], "QEMU or virtiofsd outlived labkit"
    if how == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
        assert scratch_of(proc.pid) == []
    else:  # killed outright: its scratch dirs stay, named after it, until `labkit cleanup`
        left = scratch_of(proc.pid)
        assert {p.name.split("-")[0] for p in left} == {"nested", "qemu"}, left
        report = cleanup.cleanup(kinds=("dir",))
        assert {str(p) for p in left} <= {r.name for r in report.removed}
        assert scratch_of(proc.pid) == []


@pytest.mark.skipif(students.skip_unless_root() is not None, reason=students.skip_unless_root() or "")
def test_unprivileged_user_is_told_what_virtiofsd_needs() -> None:
    """Debian 12's C virtiofsd needs root: the CLI says so, and notebook 04's section prints it instead."""
    demo = ("import asyncio; from labkit import nested; "
            "b = asyncio.run(nested.boot_under_kvm_inside()); print(b.ran, b.why_not)")
    with students.exclusive(), students.student("labkit-stu1") as stu:
        proc = stu.labkit("nested", "run", "--", "true")
        notebook = subprocess.run(stu.argv(sys.executable, "-c", demo), cwd=TOP, capture_output=True, text=True,
                                  timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "labkit: error: virtiofsd did not start" in proc.stderr and "needs root" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert notebook.returncode == 0, notebook.stderr
    assert notebook.stdout.startswith("False virtiofsd did not start") and "needs root" in notebook.stdout
