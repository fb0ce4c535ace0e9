"""``labkit cleanup``: after a killed run it removes exactly the leftovers, and nothing else.

Real parts: real QEMU processes, a real libvirt daemon (``qemu:///system`` as
root, ``qemu:///session`` for a student), real SIGKILLs.  The test process
shares the host with other tests (and, as root, with their guests), so the
root-side assertions look at what *this* test made; the student test owns a
whole user and asserts exactly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

import students
from conftest import lab_guests
from framework import process_ended, wait_for
from labkit import cleanup, images, libvirtd, qemu, runtime, virt
from labkit.errors import AccessDeniedError

#: A lab run that starts a QEMU guest (labkit.qemu) and a libvirt domain, both paused (no CPU burnt),
#: says what it made, and then waits: for SIGKILL (a killed notebook kernel) or for stdin to close (a
#: notebook that is still running, until the test lets it finish normally).
LAB_RUN = textwrap.dedent("""
    import asyncio, json, sys
    from labkit import images, qemu, virt

    async def main():
""") + textwrap.indent(lab_guests("run"), "    ") + textwrap.dedent("""
        print(json.dumps({"qemu_pid": vm.pid, "qemu_name": vm.name, "domain": dom.name, "uri": conn.choice.uri,
                          "domain_scratch": str(dom.console_log.parent)}), flush=True)
        sys.stdin.read()

    asyncio.run(main())
""")


def start_lab_run(argv: list[str]) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"the lab run did not start: {proc.communicate(timeout=30)[1]}")
    return proc, json.loads(line)


def labkit_cleanup(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "labkit", "cleanup", "--json", *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def owned_by(report: dict, pid: int) -> set[tuple[str, str, str]]:
    return {(i["kind"], i["name"], i["action"]) for i in report["items"] if i["owner_pid"] == pid}


def wait_gone(pid: int) -> bool:
    """Wait (≤ 10 s) until process ``pid`` has ended: True, or the test fails."""
    return wait_for(lambda: process_ended(pid), 10, f"process {pid} to end")


def exists(kind: str, name: str) -> bool:
    if kind == "domain":
        with virt.connect() as conn:
            return name in conn.domains()
    return Path(name).exists()


def dead_pid() -> int:
    """The pid of a process that has exited: what a leftover's name carries after its owner died."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def foreign_qemu(name: str) -> psutil.Process:
    """A QEMU that labkit did not start (its parent exits at once, so init reaps it, as for any stray QEMU)."""
    subprocess.run(["setsid", "-f", qemu.qemu_binary(), "-name", name, "-S", "-display", "none", "-nodefaults",
                    "-machine", "pc", "-m", "16"], check=True)

    def started() -> psutil.Process | None:
        return next((p for p in psutil.process_iter(["cmdline"]) if name in (p.info["cmdline"] or [])), None)
    return wait_for(started, 10, f"QEMU {name} to start")


@pytest.fixture
def foreign_domain():
    """A domain on the same daemon without the lab's name: cleanup must never see it."""
    with virt.connect() as conn:
        name = f"kvmlab-not-lab-{os.getpid()}"
        root = ET.fromstring(f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>16</memory>"
                             "<os><type arch='x86_64'>hvm</type></os></domain>")
        dom = conn.raw.defineXML(ET.tostring(root, encoding="unicode"))
        try:
            yield name
        finally:
            dom.undefine()


def test_killed_run_leaves_what_cleanup_removes_exactly(foreign_domain: str) -> None:
    images.tiny_guest(fetch=False, progress=False)  # built by setup.sh: the runs below need no build
    live, live_info = start_lab_run([sys.executable, "-c", LAB_RUN])  # a notebook that still runs
    killed, info = start_lab_run([sys.executable, "-c", LAB_RUN])
    strangers = [foreign_qemu(f"kvmlab-not-lab-{os.getpid()}"),  # not the lab's name
                 foreign_qemu(f"labkit-someone-else-{dead_pid()}-1")]  # the lab's name, but not this user's
    try:
        killed.kill()
        killed.wait()
        # labkit.qemu's QEMU dies with its process (PR_SET_PDEATHSIG), libvirt's with its connection (autodestroy);
        # the persistent definition (the lesson's define/undefine), the scratch dirs and the log stay
        assert wait_gone(info["qemu_pid"]), "QEMU outlived the process that started it"
        wait_for(lambda: not virt.qemu_pids(info["domain"]), 15, "the domain's QEMU to end with its owner")
        with virt.connect() as conn:  # still defined (unless another lab process reclaimed it already), not running
            assert not [d for d in conn.raw.listAllDomains() if d.name() == info["domain"] and d.isActive()]
        # its QEMU scratch dir: one, or none if another lab process (a test in another worker) already
        # reclaimed it, as designed (seen in CI)
        qemu_scratch = [str(p) for p in runtime.run_dir().glob(f"qemu-{killed.pid}-*")]
        assert len(qemu_scratch) <= 1
        log = str(virt.qemu_log_path(info["uri"], info["domain"]))
        leftovers = {("domain", info["domain"]), *(("dir", p) for p in qemu_scratch),
                     ("dir", info["domain_scratch"]), ("log", log)}

        # Another lab process of this user (a test in another worker) may reclaim some of them meanwhile, as
        # designed: each leftover is either reported by cleanup or already gone, and none is ever kept.
        # That a dry run removes nothing is proven where no other process can reclaim meanwhile: in
        # test_a_students_cleanup_and_roots_all_users (exactly these would go, then exactly these are removed);
        # here, checking that they still exist raced with those reclaims (CI-like run 33: one was gone).
        dry = labkit_cleanup("--dry-run")
        assert owned_by(dry, killed.pid) <= {(k, n, "would remove") for k, n in leftovers}

        report = labkit_cleanup()
        assert owned_by(report, killed.pid) <= {(k, n, "removed") for k, n in leftovers}
        assert not any(exists(k, n) for k, n in leftovers)
        assert all(not i["owner_alive"] for i in report["items"] if i["action"] == "removed")
        with virt.connect() as conn:
            assert info["domain"] not in conn.domains() and foreign_domain in {d.name() for d in
                                                                                conn.raw.listAllDomains()}
        assert not virt.qemu_pids(info["domain"])
        assert not any(Path(n).exists() for k, n in leftovers if k != "domain")
        # the live run keeps everything, reported as kept; the strangers are not even mentioned
        kept = owned_by(report, live.pid)
        assert ("qemu", live_info["qemu_name"], "kept") in kept and ("domain", live_info["domain"], "kept") in kept
        assert psutil.pid_exists(live_info["qemu_pid"]) and virt.qemu_pids(live_info["domain"])
        assert all(p.is_running() for p in strangers)
        assert not any("not-lab" in i["name"] or "someone-else" in i["name"] for i in report["items"])

        assert owned_by(labkit_cleanup(), killed.pid) == set()  # a second cleanup finds nothing of it
    finally:
        killed.kill()
        live.stdin.close()  # the notebook finishes normally and releases its own guests
        live.wait(60)
        for proc in strangers:
            proc.kill()
    assert wait_gone(live_info["qemu_pid"]) and not virt.qemu_pids(live_info["domain"])


def test_orphaned_qemu_process_is_stopped() -> None:
    """A QEMU with this user's lab name whose owner is gone (e.g. its libvirtd was killed) is stopped."""
    orphan_name, live_name = f"{runtime.prefix()}orphan-{dead_pid()}-1", f"{runtime.prefix()}adopted-{os.getpid()}-2"
    orphan, live = foreign_qemu(orphan_name), foreign_qemu(live_name)  # the second names this (live) process
    try:
        rows = {i["name"]: i for i in labkit_cleanup()["items"] if i["kind"] == "qemu"}
        assert rows[orphan_name]["action"] == "removed" and not rows[orphan_name]["owner_alive"]
        assert rows[orphan_name]["detail"].endswith(f"stopped pid {orphan.pid} (SIGTERM)")
        assert rows[live_name]["action"] == "kept" and rows[live_name]["owner_alive"]
        assert wait_gone(orphan.pid) and live.is_running()
    finally:
        for proc in (orphan, live):
            with contextlib.suppress(psutil.Error):
                proc.kill()


#: ``labkit cleanup`` in a Python where ``import libvirt`` fails (sys.modules[name] = None makes it raise).
NO_LIBVIRT = textwrap.dedent("""
    import json, sys
    sys.modules["libvirt"] = None
    from labkit import cleanup
    report = cleanup.cleanup()
    print(json.dumps({**report.to_dict(), "virt_imported": "labkit.virt" in sys.modules}))
""")


def test_cleanup_without_libvirt_python(tmp_path: Path) -> None:
    """Without libvirt-python, cleanup still stops orphaned QEMUs and removes scratch dirs, and says what it skipped."""
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)  # a private $XDG_RUNTIME_DIR: the run dir is this test's alone
    scratch = xdg / "labkit" / f"qemu-{dead_pid()}-abcd1234"
    scratch.mkdir(parents=True)
    (xdg / "labkit").chmod(0o700)
    orphan_name = f"{runtime.prefix()}nolibvirt-{dead_pid()}-1"
    orphan = foreign_qemu(orphan_name)
    try:
        proc = subprocess.run([sys.executable, "-c", NO_LIBVIRT], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "XDG_RUNTIME_DIR": str(xdg)})
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        rows = {i["name"]: i for i in report["items"]}
        assert not report["virt_imported"]
        assert report["notes"] == ["libvirt domains and their logs were not looked at: libvirt-python is not "
                                   "installed (./kvmlab setup installs it)"]
        assert rows[orphan_name]["action"] == "removed" and wait_gone(orphan.pid)
        assert rows[str(scratch)]["action"] == "removed" and not scratch.exists()
        assert not any(i["kind"] in ("domain", "log") for i in report["items"])
    finally:
        with contextlib.suppress(psutil.Error):
            orphan.kill()


# --------------------------------------------------------------------------- one student's lab, with root watching

STUDENT_RUN = LAB_RUN.replace('name="run"', 'name="stu"')


@pytest.mark.skipif(students.skip_unless_root() is not None, reason=students.skip_unless_root() or "")
def test_a_students_cleanup_and_roots_all_users() -> None:
    """A student's killed run and live notebook; what the student, and root, may and do remove."""
    with students.exclusive(), students.shared_cache() as cache, students.student("labkit-stu4", cache) as stu:
        fresh = stu.labkit("cleanup")  # nothing to do: and no libvirt daemon started just to ask
        assert fresh.returncode == 0 and fresh.stdout.startswith("nothing left behind by the lab for labkit-stu4")
        assert libvirtd.session_daemons(stu.uid) == ()
        live, live_info = start_lab_run(stu.argv(sys.executable, "-c", STUDENT_RUN))
        killed, info = start_lab_run(stu.argv(sys.executable, "-c", STUDENT_RUN))
        # runuser's pid is not the lab's: the names carry the student's python
        killed_pid, live_pid = (int(i["domain"].rsplit("-", 1)[1]) for i in (info, live_info))
        try:
            assert info["uri"] == virt.SESSION_URI and info["domain"].startswith(stu.prefix)
            os.kill(killed_pid, signal.SIGKILL)
            assert wait_gone(info["qemu_pid"])
            log = str(Path(stu.home) / ".cache/libvirt/qemu/log" / f"{info['domain']}.log")
            leftovers = {("domain", info["domain"]), ("dir", info["domain_scratch"]), ("log", log),
                         ("dir", str(next(stu.run_dir.glob(f"qemu-{killed_pid}-*"))))}

            # root's plain cleanup is root's own: not a word about the student
            assert not [i for i in labkit_cleanup()["items"] if i["user"] == runtime.user_name(stu.uid)]
            # the student may not clean up others
            refused = stu.labkit("cleanup", "--all-users")
            assert refused.returncode == 2 and "only root" in refused.stderr and "sudo" in refused.stderr

            # the student's own dry run: the killed run's things would go, the live notebook's are kept
            dry = json.loads(stu.labkit("cleanup", "--dry-run", "--json").stdout)
            assert owned_by(dry, killed_pid) == {(k, n, "would remove") for k, n in leftovers}
            assert {(k, a) for k, _, a in owned_by(dry, live_pid)} == {("qemu", "kept"), ("domain", "kept"),
                                                                       ("dir", "kept")}

            # root with --all-users reaches the student's session daemon through its socket
            report = labkit_cleanup("--all-users")
            assert owned_by(report, killed_pid) == {(k, n, "removed") for k, n in leftovers}
            where = {i["where"] for i in report["items"] if i["owner_pid"] == killed_pid and i["kind"] == "domain"}
            assert where == {f"qemu:///session of {runtime.user_name(stu.uid)}"}
            assert {a for _, _, a in owned_by(report, live_pid)} == {"kept"}

            # the student forces it: `labkit virt cleanup` takes every lab domain, also the live notebook's ...
            alias = stu.labkit("virt", "cleanup")
            rows = [line.split()[:2] + line.split()[5:6] for line in alias.stdout.splitlines()[1:-1]]
            assert alias.returncode == 0 and rows == [["removed", "domain", live_info["domain"]],
                                                      ["removed", "log", f"{log.rsplit('/', 1)[0]}/"
                                                                         f"{live_info['domain']}.log"]], alias.stdout
            assert alias.stdout.splitlines()[-1].startswith("2 removed, 0 kept, 0 failed")
            # ... and `labkit cleanup --force` the rest: its QEMU and scratch dirs (its process stays)
            forced = json.loads(stu.labkit("cleanup", "--force", "--json").stdout)
            assert {(k, a) for k, _, a in owned_by(forced, live_pid)} == {("qemu", "removed"), ("dir", "removed")}
            assert wait_gone(live_info["qemu_pid"]) and psutil.pid_exists(live_pid)
            again = stu.labkit("cleanup")
            assert again.returncode == 0 and again.stdout.startswith("nothing left behind by the lab for"), again.stdout
        finally:
            os.kill(killed_pid, signal.SIGKILL) if psutil.pid_exists(killed_pid) else None
            killed.wait(30)
            live.stdin.close()  # the notebook finishes normally
            live.wait(60)
        assert not [p for p in stu.processes() if p.name().startswith("qemu")]
        assert not stu.run_dir.exists() or not any(stu.run_dir.iterdir())


# --------------------------------------------------------------------------- pieces, without guests


def test_owner_alive_checks_user_and_start_time() -> None:
    me = psutil.Process()
    assert cleanup.owner_alive(me.pid, os.geteuid(), time.time())
    assert not cleanup.owner_alive(me.pid, os.geteuid() + 1, time.time())  # another user's process
    assert not cleanup.owner_alive(me.pid, None, me.create_time() - 60)  # the thing predates it: pid reused
    assert not cleanup.owner_alive(dead_pid())
    kthreads = [p.pid for p in psutil.process_iter(["cmdline", "status"])
                if not p.info["cmdline"] and p.info["status"] != psutil.STATUS_ZOMBIE]
    assert not any(cleanup.owner_alive(pid) for pid in kthreads)  # a kernel thread made nothing of the lab


@pytest.mark.parametrize("owner, force, dry_run, action", [
    ("gone", False, False, "removed"), ("gone", False, True, "would remove"),
    ("running", False, False, "kept"), ("running", True, False, "removed"), ("running", True, True, "would remove"),
    ("unknown", False, False, "kept"), ("unknown", True, False, "removed"),
])
def test_what_is_removed_by_default_and_with_force(owner: str, force: bool, dry_run: bool, action: str) -> None:
    """The policy: orphans go; what a running process owns, or whose owner is unknown, only with force."""
    done = []
    pid = {"gone": dead_pid(), "running": os.getpid(), "unknown": None}[owner]
    found = cleanup.Found("dir", "/tmp/labkit-x/virt-1-a", "x", os.geteuid(), pid, time.time(), "/tmp/labkit-x",
                           lambda: done.append(1) or "deleted")
    row = cleanup.settle(found, force, dry_run)
    assert row.action == action and row.owner_alive is (owner == "running")
    assert done == ([1] if action == "removed" else [])
    assert ("--force" in row.detail) is (owner != "gone")


def test_a_failed_removal_is_reported_not_raised() -> None:
    def refuse() -> str:
        raise PermissionError("Operation not permitted: /tmp/labkit-x/qemu-1-a")
    row = cleanup.settle(cleanup.Found("dir", "/tmp/labkit-x/qemu-1-a", "x", None, dead_pid(), None, "/tmp",
                                         refuse), False, False)
    assert row.action == "failed" and "Operation not permitted" in row.detail
    report = cleanup.CleanupReport((row,), ("x",), False, False)
    assert report.failed == (row,) and report.removed == ()


def test_run_dirs_are_found_by_owner_and_exact_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cleanup.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(runtime.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(runtime, "USUAL_TMP", tmp_path)
    monkeypatch.setattr(runtime, "USUAL_RUNTIME", tmp_path / "run-user")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    mine = runtime.run_dir()
    decoys = [tmp_path / f"{runtime.prefix()}session-test",  # starts like a run dir, is none
              tmp_path / "labkit-nosuchuser"]  # owned by me, named for someone else
    for decoy in decoys:
        decoy.mkdir()
    assert runtime.run_dirs(all_users=False) == [(mine, runtime.user_name(), os.geteuid())]
    every = runtime.run_dirs(all_users=True)  # other users' run dirs on this host may be there too
    assert (mine, runtime.user_name(), os.geteuid()) in every and not any(path in decoys for path, _, _ in every)


def test_run_dirs_under_another_xdg_runtime_dir_or_tmpdir_are_found_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run dir labkit used under a custom XDG_RUNTIME_DIR or TMPDIR is found by a later `labkit cleanup` in a
    plain environment, and by root's --all-users: --dry-run lists what the real cleanup then removes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    xdg, elsewhere, plain = tmp_path / "xdg", tmp_path / "elsewhere", tmp_path / "plain"
    for folder in (xdg, elsewhere, plain):
        folder.mkdir(mode=0o700)
    left = []
    for variable, value in (("XDG_RUNTIME_DIR", xdg), ("TMPDIR", elsewhere)):  # a killed run's scratch dir there
        with monkeypatch.context() as env:
            env.delenv("XDG_RUNTIME_DIR", raising=False)
            if variable == "XDG_RUNTIME_DIR":
                env.setenv(variable, str(value))
            else:
                env.setattr(runtime.tempfile, "gettempdir", lambda value=value: str(value))
            left.append(runtime.run_dir() / f"boot-{dead_pid()}-abcdefgh")
            left[-1].mkdir()
    assert left[0].parent == xdg / "labkit" and left[1].parent.parent == elsewhere
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)  # later, in a plain environment
    monkeypatch.setattr(runtime.tempfile, "gettempdir", lambda: str(plain))
    # and the usual places are empty ones of this test: the host's /tmp/labkit-root may hold, for a moment, the
    # scratch dir of a process another test has just killed on purpose (seen once, a virt-PID-XXXXXXXX)
    monkeypatch.setattr(runtime, "USUAL_TMP", plain)
    monkeypatch.setattr(runtime, "USUAL_RUNTIME", tmp_path / "run-user")

    def dirs(report: cleanup.CleanupReport) -> set[str]:
        return {i.name for i in report.removed if i.kind == "dir"}

    expected = {str(p) for p in left}
    if os.geteuid() == 0:
        assert expected <= dirs(cleanup.cleanup(all_users=True, dry_run=True, kinds=("dir",)))
    else:
        with pytest.raises(AccessDeniedError, match="only root"):
            cleanup.cleanup(all_users=True, dry_run=True, kinds=("dir",))
    assert dirs(cleanup.cleanup(dry_run=True, kinds=("dir",))) == expected
    assert dirs(cleanup.cleanup(kinds=("dir",))) == expected
    assert not any(p.exists() for p in left)


def test_only_root_cleans_up_for_everyone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cleanup.os, "geteuid", lambda: 1000)
    with pytest.raises(AccessDeniedError, match="only root") as err:
        cleanup.cleanup(all_users=True)
    assert "sudo" in err.value.fix


def test_report_counts_and_json() -> None:
    row = cleanup.Leftover("dir", "/tmp/labkit-x/qemu-1-a", "x", 1, False, "/tmp/labkit-x", "would remove", "gone")
    report = cleanup.CleanupReport((row, row.__class__(**{**row.__dict__, "action": "kept"})), ("x",), True, False)
    assert (len(report.removed), len(report.kept), len(report.failed)) == (1, 1, 0)
    assert json.loads(json.dumps(report.to_dict()))["items"][0]["kind"] == "dir"


def test_cli_table() -> None:
    proc = subprocess.run([sys.executable, "-m", "labkit", "cleanup", "--dry-run"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("nothing left behind by the lab for") or (
        lines[0].split() == ["action", "kind", "user", "owner", "name", "why"] and " would remove, " in lines[-1])


def test_dead_kernels_connection_files_are_listed_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """papermill's /tmp/tmp*.json of a kernel that is gone; one a live kernel names, or a young one, stays."""
    monkeypatch.setattr(runtime.tempfile, "gettempdir", lambda: str(tmp_path))
    keys = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5, "ip": "127.0.0.1",
            "key": "k", "transport": "tcp", "signature_scheme": "hmac-sha256", "kernel_name": "python3"}
    dead, live, young = (tmp_path / f"tmp{n}.json" for n in ("dead", "live", "young"))
    for path in (dead, live, young, tmp_path / "tmpother.json"):
        path.write_text(json.dumps(keys if path.name != "tmpother.json" else {"not": "a kernel"}))
        if path != young:
            os.utime(path, (time.time() - 120, time.time() - 120))
    kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-f", str(live)])
    try:
        assert runtime.orphan_kernel_files() == [dead]
        rows = [r for r in cleanup.cleanup(kinds=("kernelfile",)).items]
        assert [(r.kind, r.name, r.action) for r in rows] == [("kernelfile", str(dead), "removed")]
        assert not dead.exists() and live.exists() and young.exists()
    finally:
        kernel.kill()
        kernel.wait()
