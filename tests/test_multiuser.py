"""Many students on one host: three unprivileged users boot guests at once, and nothing is left behind.

Root (CI) creates three student accounts and a read-only guest image cache
the way an instructor would (``labkit image build --into``), then each
student, at the same time, runs the QEMU layer (``labkit boot``, notebook
04's guest) and the libvirt layer (``labkit virt boot``, notebook 05's
guest on their own ``qemu:///session``).  ``/dev/kvm`` is root's here, so
the students' guests run under TCG — the point is that they share nothing:
names, processes, run dirs, libvirt daemons, sockets and logs are theirs.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import libvirt
import psutil
import pytest

import students
from labkit import host, libvirtd, runtime

pytestmark = pytest.mark.skipif(students.skip_unless_root() is not None, reason=students.skip_unless_root() or "")

NAMES = ("labkit-stu1", "labkit-stu2", "labkit-stu3")


class QemuWatcher(threading.Thread):
    """Samples the host's QEMU processes while the students work: (uid, -name) of each, and the peak count."""

    def __init__(self, uids: set[int]) -> None:
        super().__init__(daemon=True)
        self.uids, self.seen, self.peak = uids, set(), 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            now = set()
            for proc in psutil.process_iter(["cmdline", "uids"]):
                argv, uids = proc.info["cmdline"] or [], proc.info["uids"]
                if uids and uids.real in self.uids and argv and "qemu-system" in argv[0] and "-name" in argv:
                    now.add((uids.real, argv[argv.index("-name") + 1].split(",")[0].removeprefix("guest=")))
            self.seen |= now
            self.peak = max(self.peak, len(now))
            self._done.wait(0.1)  # the sampling period; stop() ends it at once

    def stop(self) -> None:
        self._done.set()
        self.join()


def test_three_students_boot_at_once_and_leave_nothing_behind() -> None:
    started = time.monotonic()
    with students.exclusive(), students.shared_cache() as cache, contextlib.ExitStack() as stack:
        studs = [stack.enter_context(students.student(name, cache)) for name in NAMES]
        watcher = QemuWatcher({s.uid for s in studs})
        watcher.start()
        runs = {}
        for stu in studs:  # both layers of all three students at once
            for layer, args in (("qemu", ("boot", "--json")), ("libvirt", ("virt", "boot", "--cmdline"))):
                runs[stu.name, layer] = subprocess.Popen(stu.argv(sys.executable, "-m", "labkit", *args),
                                                         cwd=students.TOP, stdout=subprocess.PIPE,
                                                         stderr=subprocess.PIPE, text=True)
        out = {key: proc.communicate(timeout=240) for key, proc in runs.items()}
        watcher.stop()
        for key, proc in runs.items():
            assert proc.returncode == 0, f"{key}: {out[key][0]}\n{out[key][1]}"
        print(f"\nthree students, two layers each: {time.monotonic() - started:.1f} s, "
              f"up to {watcher.peak} student QEMUs at once")

        tcg_only = not host.inspect().verdict.boots_linux or not os.stat("/dev/kvm").st_mode & 0o006
        for stu in studs:
            prefix = stu.prefix
            # the QEMU layer: their own guest, named for them, under TCG, booted from the shared cache
            booted = json.loads(out[stu.name, "qemu"][0])
            argv = booted["command_line"]
            assert argv[argv.index("-name") + 1].startswith(f"{prefix}tiny-")
            assert booted["report"]["kernel_release"] and Path(argv[argv.index("-kernel") + 1]).is_relative_to(cache)
            assert booted["accel"]["name"] == "tcg" or not tcg_only
            # the libvirt layer: a domain on their own session daemon
            text = out[stu.name, "libvirt"][0]
            domain = text.split("started ", 1)[1].split()[0]
            assert domain.startswith(f"{prefix}cli-") and f"-name guest={domain}," in text
            assert "report: Linux " in text and f"destroyed {domain}" in text
            assert ("-accel tcg" in text) or not tcg_only
            # every QEMU that carried their name ran as them, and both layers were seen running
            theirs = {name for uid, name in watcher.seen if uid == stu.uid}
            assert all(name.startswith(prefix) for name in theirs), theirs
            assert any(n.startswith(f"{prefix}tiny-") for n in theirs) and domain in theirs, theirs
            # their libvirt daemon, its socket and its QEMU logs live in their own HOME
            daemons = libvirtd.session_daemons(stu.uid)
            assert len(daemons) == 1 and daemons[0].socket.is_relative_to(stu.home), daemons
            assert daemons[0].socket.stat().st_uid == stu.uid
            logs = stu.home / ".cache/libvirt/qemu/log"
            assert logs.stat().st_uid == stu.uid and not (libvirtd.SYSTEM_QEMU_LOGS / f"{domain}.log").exists()
            assert not (logs / f"{domain}.log").exists()  # the domain took its log with it
            # their run dir is private to them, and empty again
            st = stu.run_dir.stat()
            assert st.st_uid == stu.uid and stat.S_IMODE(st.st_mode) == 0o700
            assert not any(stu.run_dir.iterdir()), list(stu.run_dir.iterdir())
            # nothing of theirs runs and their session has no domain left
            assert not [p for p in stu.processes() if p.name().startswith("qemu")]
            conn = libvirt.open(daemons[0].uri)
            try:
                assert conn.listAllDomains() == []
            finally:
                conn.close()

        # an instructor's `labkit cleanup --all-users` finds nothing of theirs left to remove
        mine = {runtime.user_name(s.uid) for s in studs}
        assert not [i for i in _cleanup("--dry-run")["items"] if i["user"] in mine]
        uids = {s.uid for s in studs}
    # the students' libvirt daemons were stopped, and nothing else of theirs runs
    assert not [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real in uids]


def _cleanup(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "labkit", "cleanup", "--all-users", "--json", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
