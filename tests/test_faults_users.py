"""Fault injection with other users: a libvirt daemon killed under a guest, a squatted run dir, private caches.

These run as unprivileged student accounts (``tests/students.py``, one test
at a time across worktrees), so the daemon killed here is a student's own
``qemu:///session`` libvirtd — never the shared system daemon that other
tests use.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

import students
from framework import wait_for
from labkit import runtime, virt

pytestmark = pytest.mark.skipif(students.skip_unless_root() is not None, reason=students.skip_unless_root() or "")

LOST_DAEMON = textwrap.dedent("""
    import json, sys, warnings
    from labkit import images, virt
    conn = virt.connect()
    dom = conn.define(virt.DomainSpec.for_image("lost", images.tiny_guest(fetch=False, progress=False),
                                                domain_type="qemu"))
    dom.start()
    print(json.dumps({"name": dom.name, "uri": conn.choice.uri}), flush=True)
    sys.stdin.readline()  # the test kills this user's libvirtd now
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dom.close()
    left = virt.connect().domains()
    print(json.dumps({"warnings": [str(w.message) for w in caught], "lost": dom.lost_connection,
                      "left": left}), flush=True)
""")


def test_libvirtd_killed_while_a_domain_runs() -> None:
    """close() says what libvirt said when the daemon vanished, connects again, and still removes the guest."""
    with students.exclusive(), students.shared_cache() as cache, students.student("labkit-stu1", cache) as stu:
        proc = subprocess.Popen(stu.argv(sys.executable, "-u", "-c", LOST_DAEMON), cwd=students.TOP, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            name = json.loads(line)["name"]
            assert virt.qemu_pids(name), "the guest should be running"
            daemons = [p for p in students.session_daemons(stu.uid) if p.name() == "libvirtd"]
            assert len(daemons) == 1
            daemons[0].send_signal(signal.SIGKILL)
            psutil.wait_procs(daemons, timeout=10)
            out, err = proc.communicate(input="\n", timeout=120)
        finally:
            proc.kill()
        assert "Traceback" not in err, err
        result = json.loads(out.strip().splitlines()[-1])
        assert result["lost"], "close() did not notice the daemon went away"
        assert any("went away" in w and result["lost"] in w for w in result["warnings"]), result
        assert name not in result["left"]  # removed after reconnecting
        assert not virt.qemu_pids(name), "the guest's QEMU outlived close()"


def _cleanup_dry_run() -> dict:
    proc = subprocess.run([sys.executable, "-m", "labkit", "cleanup", "--all-users", "--dry-run", "--json"],
                          capture_output=True, text=True, timeout=120, cwd=students.TOP)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def test_a_squatted_run_dir_does_not_lock_a_student_out_and_caches_stay_private() -> None:
    """stu1 makes /tmp/labkit-<stu2> first; both boot at once; stu2 uses a private fallback, and stu1 cannot
    read stu2's guest command from stu2's image cache even where stu2's home is open (0755)."""
    with students.exclusive(), students.shared_cache() as cache, \
            students.student("labkit-stu1", cache) as stu1, students.student("labkit-stu2", cache) as stu2:
        squat = stu2.run_dir
        subprocess.run(stu1.argv("mkdir", "-m", "0777", str(squat)), check=True)
        stu2.home.chmod(0o755)  # as many /home/<user> are: only the cache's own modes protect it
        secret = "echo secret-of-stu2"
        runs = [subprocess.Popen(s.argv(sys.executable, "-m", "labkit", "boot", "--command", cmd),
                                 cwd=students.TOP, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for s, cmd in ((stu1, "echo hello"), (stu2, secret))]
        outs = [p.communicate(timeout=240) for p in runs]
        for p, (out, err) in zip(runs, outs):
            assert p.returncode == 0 and "Traceback" not in err, out + err
        assert "secret-of-stu2" in outs[1][0]
        # stu2 ran in a private fallback dir, and the squatted one was not used
        fallbacks = [p for p in Path(squat.parent).glob(f"{stu2.prefix}*")
                     if runtime.is_fallback_run_dir(p.name, runtime.user_name(stu2.uid))]
        assert len(fallbacks) == 1 and fallbacks[0].stat().st_uid == stu2.uid
        assert stat.S_IMODE(fallbacks[0].stat().st_mode) == 0o700 and not any(squat.iterdir())
        # stu2's cache: private modes, and stu1 cannot read the image holding stu2's command
        user_cache = stu2.home / ".cache" / "labkit"
        built = [p for p in (user_cache / "images" / "initramfs").glob("tiny-*-cmd-*.cpio.gz")]
        assert len(built) == 1
        for path in (user_cache, built[0].parent, built[0]):
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, oct(path.stat().st_mode)
        peek = subprocess.run(stu1.argv("cat", str(built[0])), capture_output=True)
        assert peek.returncode != 0 and b"Permission denied" in peek.stderr
        # root's cleanup --all-users reports the squatted name, whose it is and who made it
        rows = [i for i in _cleanup_dry_run()["items"] if i["kind"] == "squatted" and i["name"] == str(squat)]
        assert len(rows) == 1 and f"owned by {runtime.user_name(stu1.uid)}" in rows[0]["where"], rows
        assert rows[0]["action"] == "kept" and "--force" in rows[0]["detail"]
        os.rmdir(squat)


def test_libvirtd_killed_mid_virt_boot_leaves_no_qemu_and_no_state_files() -> None:
    """The daemon dies while it creates the guest (QEMU already runs): `virt boot` ends in one clear error, and
    neither QEMU nor libvirt's state files for the guest (qemu/run/NAME.xml, .pid, the monitor dir) outlive it."""
    with students.exclusive(), students.shared_cache() as cache, students.student("labkit-stu1", cache) as stu:
        proc = subprocess.Popen(stu.argv(sys.executable, "-m", "labkit", "virt", "boot", "--name", "lost"),
                                cwd=students.TOP, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            name = wait_for_qemu(stu, "lost-", proc)
            daemons = [p for p in students.session_daemons(stu.uid) if p.name() == "libvirtd"]
            assert len(daemons) == 1
            daemons[0].send_signal(signal.SIGKILL)
            out, err = proc.communicate(timeout=180)
        finally:
            proc.kill()
        assert "Traceback" not in err and proc.returncode in (0, 2), out + err  # killed mid-create, or just after
        assert not virt.qemu_pids(name), "the guest's QEMU outlived virt boot"
        state = stu.home / ".cache" / "libvirt" / "qemu" / "run"
        assert not list(state.glob(f"{name}.*")), sorted(p.name for p in state.iterdir())
        lib = stu.home / ".config" / "libvirt" / "qemu" / "lib"
        assert not list(lib.glob("domain-*")), sorted(p.name for p in lib.iterdir())
        assert not any(stu.run_dir.iterdir())


def wait_for_qemu(stu: students.Student, label: str, owner: subprocess.Popen, timeout: float = 180) -> str:
    """The domain name of the student's QEMU whose name has ``label``, once it runs."""
    def running() -> str | None:
        for qemu in psutil.process_iter(["cmdline", "uids"]):
            name = virt.qemu_name(qemu.info["cmdline"] or [])
            if name and qemu.info["uids"] and qemu.info["uids"].real == stu.uid and label in name:
                return name.removeprefix("guest=")
        assert owner.poll() is None, owner.communicate()
        return None
    return wait_for(running, timeout, "the guest's QEMU to start")
