"""The hub's parts without a hub: cgroup detection and limits on recorded hierarchies, the plan, the config."""

from __future__ import annotations

import os
import pwd
import socket
import sys
import threading
from pathlib import Path

import psutil
import pytest
from traitlets.config import Config

from labkit import cli
from labkit.errors import InvalidOptionError
from labkit.hub import HubPlan, Limits, accounts, claim, config, limits, privacy, server

# /proc/self/mounts and /proc/self/cgroup of three kinds of host
HYBRID_MOUNTS = """tmpfs /sys/fs/cgroup tmpfs rw 0 0
cgroup {root}/cpu cgroup rw,relatime,cpu 0 0
cgroup {root}/memory cgroup rw,relatime,memory 0 0
cgroup2 {root}/unified cgroup2 rw,relatime 0 0
"""
HYBRID_CGROUP = "4:memory:/process_api/abc\n1:cpu:/\n0::/\n"
V2_MOUNTS = "cgroup2 {root} cgroup2 rw,nosuid 0 0\n"
V2_CGROUP = "0::/\n"


def fake_hybrid(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "memory/process_api/abc").mkdir(parents=True)
    (tmp_path / "cpu").mkdir()
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified/cgroup.controllers").write_text("hugetlb\n")
    mounts, cgroup = tmp_path / "mounts", tmp_path / "cgroup"
    mounts.write_text(HYBRID_MOUNTS.format(root=tmp_path))
    cgroup.write_text(HYBRID_CGROUP)
    return mounts, cgroup


def test_a_hybrid_host_gets_v1_limits_in_its_own_groups(tmp_path: Path) -> None:
    support = limits.detect(*fake_hybrid(tmp_path))
    assert support.version == "v1"
    assert support.memory_root == tmp_path / "memory/process_api/abc" and support.cpu_root == tmp_path / "cpu"
    assert "offers only hugetlb" in support.reason
    group = limits.StudentGroup(support, "alice")
    group.create(Limits(memory_mib=2048, cpus=1.5))
    assert (group.memory / "memory.limit_in_bytes").read_text() == str(2048 << 20)
    assert (group.cpu / "cpu.cfs_quota_us").read_text() == "150000"
    assert group.memory_limit_mib() == 2048 and group.cpu_limit() == 1.5


def fake_v2(tmp_path: Path, controllers: str) -> limits.Support:
    """What :func:`limits.detect` finds on a cgroup2-only host whose root offers ``controllers``."""
    (tmp_path / "cgroup.controllers").write_text(controllers + "\n")
    mounts, cgroup = tmp_path / "mounts", tmp_path / "cgroup"
    mounts.write_text(V2_MOUNTS.format(root=tmp_path))
    cgroup.write_text(V2_CGROUP)
    return limits.detect(mounts, cgroup)


def test_a_v2_host_gets_memory_max_and_cpu_max(tmp_path: Path) -> None:
    support = fake_v2(tmp_path, "cpuset cpu io memory pids")
    assert support.version == "v2" and support.memory_root == tmp_path
    group = limits.StudentGroup(support, "bob")
    group.create(Limits(memory_mib=1024, cpus=None))
    assert (tmp_path / limits.PARENT / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert (group.memory / "memory.max").read_text() == str(1024 << 20)
    assert (group.memory / "cpu.max").read_text() == f"max {limits.CPU_PERIOD_US}"
    assert group.memory_limit_mib() == 1024 and group.cpu_limit() is None


def test_without_memory_and_cpu_controllers_there_are_no_limits_and_it_says_why(tmp_path: Path) -> None:
    support = fake_v2(tmp_path, "hugetlb pids")
    assert support.version is None and "offers only hugetlb, pids" in support.reason
    with pytest.raises(InvalidOptionError, match="no cgroup memory/cpu control"):
        limits.StudentGroup(support, "carol")


@pytest.mark.parametrize("memory_mib, cpus", [(100, None), (None, 0.0), (None, 5000)])
def test_limits_that_cannot_work_are_refused(memory_mib: int | None, cpus: float | None) -> None:
    with pytest.raises(InvalidOptionError):
        Limits(memory_mib, cpus)


def test_the_plan_survives_its_json_and_the_config_applies_it(tmp_path: Path) -> None:
    plan = HubPlan(Path("/srv/kvm-lab"), ("alice", "bob"), tmp_path / "state", "127.0.0.1", 8123,
                   Limits(2048, 1.0), Path("/var/cache/labkit"))
    path = config.write(plan)
    assert (plan.state_dir.stat().st_mode & 0o777) == 0o700
    assert HubPlan.load(plan.plan_file) == plan
    assert plan.proxy == Path("/srv/kvm-lab/.venv/node/node_modules/.bin/configurable-http-proxy")
    c = Config()
    exec(compile(path.read_text(), str(path), "exec"), {"c": c})  # what jupyterhub -f does
    assert c.JupyterHub.authenticator_class == "pam"
    assert c.Authenticator.allowed_users == {"alice", "bob"}
    assert c.JupyterHub.spawner_class == "labkit.hub.spawner.LabSpawner"
    assert c.LabSpawner.plan_file == str(plan.plan_file)
    assert c.ConfigurableHTTPProxy.command == [str(plan.proxy)]
    assert c.JupyterHub.port == 8123 and c.JupyterHub.cleanup_servers is True


def test_password_files_are_chpasswd_lines() -> None:
    assert accounts.parse_passwords("# class A\nalice:s3cret:with:colons\n\nbob:pw\n") == {
        "alice": "s3cret:with:colons", "bob": "pw"}
    with pytest.raises(InvalidOptionError, match="line 1"):
        accounts.parse_passwords("alice\n")
    with pytest.raises(InvalidOptionError, match="not a valid student login name"):
        accounts.parse_passwords("Robert'); DROP:pw\n")


@pytest.mark.parametrize("argv, message", [
    (["hub", "start", "--count", "0"], "--count 0 is out of range"),
    (["hub", "start", "--students", "ok,Not Valid"], "'Not Valid' is not a valid student login name"),
    (["hub", "start", "--count", "2", "--memory-mib", "64", "--state", "/nonexistent/x"], "too small"),
    (["hub", "start", "--students", "daemon", "--state", "/nonexistent/x"], "'daemon' is a system account"),
])
def test_bad_hub_options_give_one_clear_error(argv: list[str], message: str, capsys) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "labkit: error: " in err and message in err and "fix:" in err and "Traceback" not in err


def test_students_get_both_editions_and_no_write_through_their_symlinks(tmp_path: Path) -> None:
    source = tmp_path / "notebooks"
    (source / "ko" / "catalog").mkdir(parents=True)
    for path in (source / "01_kernel.ipynb", source / "ko" / "01_kernel.ipynb", source / "glossary.md",
                 source / "notes.txt"):
        path.write_text("{}")
    home = tmp_path / "home"
    home.mkdir()
    student = accounts.Account("alice", os.getuid(), os.getgid(), home)
    copied = accounts.provide_notebooks(student, source)
    assert sorted(p.relative_to(home) for p in copied) == [Path("kvm-lab/01_kernel.ipynb"), Path("kvm-lab/glossary.md"),
                                                           Path("kvm-lab/ko/01_kernel.ipynb")]
    assert accounts.provide_notebooks(student, source) == []  # the student's copies (their work) are kept
    # a student who swapped ko/ for a link to somewhere else gets nothing written there
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / "kvm-lab" / "ko" / "01_kernel.ipynb").unlink()
    (home / "kvm-lab" / "ko").rmdir()
    (home / "kvm-lab" / "ko").symlink_to(elsewhere)
    assert accounts.provide_notebooks(student, source) == [] and list(elsewhere.iterdir()) == []


# --------------------------------------------------------------------------- issue 28: secrets, state, bad options


def passwords_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "class.txt"
    path.write_text("alice:pw1\n")
    path.chmod(mode)
    return path


def test_a_password_file_only_the_instructor_reads_is_used(tmp_path: Path) -> None:
    assert accounts.read_passwords(passwords_file(tmp_path)) == {"alice": "pw1"}


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_password_file_others_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    with pytest.raises(InvalidOptionError, match="readable or writable by others") as err:
        accounts.read_passwords(passwords_file(tmp_path, mode))
    assert "chmod 600" in (err.value.fix or "")


def test_a_password_file_of_another_owner_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another owner needs root (CI runs as root)")
    path = passwords_file(tmp_path)
    os.chown(path, 1, 1)
    with pytest.raises(InvalidOptionError, match="belongs to uid 1, not to you"):
        accounts.read_passwords(path)


def test_a_password_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "link.txt"
    link.symlink_to(passwords_file(tmp_path))
    with pytest.raises(InvalidOptionError, match="is a symlink"):
        accounts.read_passwords(link)


def test_a_password_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    outcome: list[BaseException | dict] = []

    def read() -> None:
        try:
            outcome.append(accounts.read_passwords(fifo))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # unblock the stuck open so the thread ends
        with open(fifo, "w"):
            pass
        pytest.fail("reading a FIFO as the password file hung")
    assert isinstance(outcome[0], InvalidOptionError) and "not a regular file" in outcome[0].what


def entry(uid: int, shell: str = "/bin/bash") -> pwd.struct_passwd:
    return pwd.struct_passwd(("someone", "x", uid, uid, "", "/home/someone", shell))


def test_system_accounts_are_told_by_every_sign(tmp_path: Path) -> None:
    assert accounts.not_a_person(entry(1500)) is None
    assert "overflow user" in accounts.not_a_person(pwd.getpwnam("nobody"))
    assert "overflow user" in accounts.not_a_person(entry(65534))
    assert "refuses logins" in accounts.not_a_person(entry(1500, "/usr/sbin/nologin"))
    assert "refuses logins" in accounts.not_a_person(entry(1500, "/bin/false"))
    assert "outside the range" in accounts.not_a_person(entry(500))
    assert "outside the range" in accounts.not_a_person(entry(4_000_000))
    defs = tmp_path / "login.defs"
    defs.write_text("# site\nUID_MIN\t\t 2000\nUID_MAX 3000\nSYS_UID_MIN 100\nSYS_UID_MAX 1999\n")
    assert accounts.uid_ranges(defs) == {"UID_MIN": 2000, "UID_MAX": 3000, "SYS_UID_MIN": 100, "SYS_UID_MAX": 1999}
    assert "2000-3000" in accounts.not_a_person(entry(1500), defs)
    assert accounts.not_a_person(entry(2500), defs) is None


@pytest.mark.parametrize("argv, message", [
    (["hub", "start", "--students", "nobody", "--state", "/nonexistent/x"], "'nobody' is a system account"),
    (["hub", "start", "--students", "", "--state", "/nonexistent/x"], "names no student"),
    (["hub", "start", "--students", ",", "--state", "/nonexistent/x"], "names no student"),
    (["hub", "start", "--students", " , ,", "--state", "/nonexistent/x"], "names no student"),
    (["hub", "start", "--count", "1", "--ip", "not an ip"], "'not an ip' is not an IP address"),
    (["hub", "start", "--count", "1", "--ip", "300.1.1.1"], "is not an IP address"),
    (["hub", "start", "--count", "1", "--port", "-1"], "port -1 is out of range"),
    (["hub", "start", "--count", "1", "--port", "0"], "port 0 is out of range"),
    (["hub", "start", "--count", "1", "--port", "65536"], "port 65536 is out of range"),
    (["hub", "start", "--count", "1", "--port", "http"], "'http' is not a port number"),
    (["hub", "start", "--count", "1", "--poll-seconds", "0"], "--poll-seconds 0 is out of range"),
    (["hub", "start", "--count", "1", "--cluster", "pbs"], "invalid choice: 'pbs'"),
])
def test_more_bad_hub_options_give_one_clear_error(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as code:  # argparse's own errors exit; labkit's return 2
        raise SystemExit(cli.main(argv))
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("labkit: error: ") and message in err and "fix:" in err and "Traceback" not in err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("same", ["state", "port"])
def test_a_second_hub_on_the_same_state_or_port_refuses_before_touching_anything(
        tmp_path: Path, same: str, capsys) -> None:
    if os.geteuid() != 0:
        pytest.skip("labkit hub start refuses non-root first (CI runs as root)")
    port = free_port()
    first = HubPlan(Path("/srv/kvm-lab"), ("alice",), tmp_path / "first", "127.0.0.1", port)
    second_state = first.state_dir if same == "state" else tmp_path / "second"
    second_port = port if same == "port" else free_port()
    name = "labkit-nohub"
    assert accounts.lookup(name) is None
    with claim.claim(first):
        assert cli.main(["hub", "start", "--students", name, "--state", str(second_state), "--ip", "127.0.0.1",
                         "--port", str(second_port)]) == 2
    err = capsys.readouterr().err
    assert "another labkit hub already uses" in err and f"pid {os.getpid()}" in err, err
    assert not second_state.exists() and not first.state_dir.exists()  # no plan, config or state written
    assert accounts.lookup(name) is None  # no account made
    with claim.claim(first):  # the first one's locks went with it: the next hub may start
        pass


def test_a_port_something_else_listens_on_is_refused_before_touching_anything(tmp_path: Path, capsys) -> None:
    if os.geteuid() != 0:
        pytest.skip("labkit hub start refuses non-root first (CI runs as root)")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["hub", "start", "--students", "labkit-nohub", "--state", str(tmp_path / "s"),
                         "--ip", "127.0.0.1", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 cannot be used" in err and "Address already in use" in err, err
    assert not (tmp_path / "s").exists()


FAKE_JUPYTERHUB = """#!{python}
# A JupyterHub that starts its proxy (in a session of its own, as JupyterHub does), then fails to start.
import subprocess, sys
proxy = subprocess.Popen([{proxy!r}], start_new_session=True)
open("proxy.pid", "w").write(str(proxy.pid))
sys.exit(1)
"""
FAKE_PROXY = "#!{python}\nimport time\ntime.sleep(300)\n"


def test_a_hub_that_fails_to_start_leaves_no_proxy_behind(tmp_path: Path) -> None:
    plan = HubPlan(tmp_path / "lab", ("alice",), tmp_path / "state", "127.0.0.1", free_port())
    plan.proxy.parent.mkdir(parents=True)
    plan.proxy.write_text(FAKE_PROXY.format(python=sys.executable))
    (plan.venv / "bin").mkdir()
    (plan.venv / "bin/jupyterhub").write_text(FAKE_JUPYTERHUB.format(python=sys.executable, proxy=str(plan.proxy)))
    for script in (plan.proxy, plan.venv / "bin/jupyterhub"):
        script.chmod(0o755)
    with pytest.raises(server.HubStartError, match="exited with status 1"):
        with server.running(plan, timeout=60):
            pass
    proxies = [p for p in psutil.process_iter(["cmdline"]) if str(plan.proxy) in (p.info["cmdline"] or [])]
    assert proxies == [] and not server.proxy_pid_file(plan).exists()
    assert server.leftovers(plan) == []


@pytest.mark.parametrize("line, hidden", [
    ("proc /proc proc rw,nosuid,nodev,noexec,relatime,hidepid=2 0 0", True),
    ("proc /proc proc rw,relatime,hidepid=invisible 0 0", True),
    ("proc /proc proc rw,relatime,hidepid=1 0 0", False),
    ("proc /proc proc rw,relatime 0 0", False),
    ("sysfs /sys sysfs rw 0 0", None),
])
def test_process_privacy_reads_hidepid(tmp_path: Path, line: str, hidden: bool | None) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(f"sysfs /sys sysfs rw 0 0\n{line}\n")
    assert privacy.process_privacy(mounts).hidden is hidden
    assert privacy.process_privacy(tmp_path / "missing").hidden is None


def test_doctor_says_whether_students_see_each_others_processes() -> None:
    from labkit import doctor, host
    check = doctor.check_privacy(host.inspect())
    on_host = privacy.process_privacy()
    assert check.name == "process privacy" and check.detail == on_host.detail
    assert (check.status == "ok") is (on_host.hidden is True)
    assert check.fix is None if on_host.hidden else "hidepid=2" in check.fix


# --------------------------------------------------------------------------- issue 30: past one host (Slurm)


def test_a_slurm_plan_survives_its_json_and_the_config_spawns_slurm_jobs(tmp_path: Path) -> None:
    plan = HubPlan(Path("/srv/kvm-lab"), ("alice",), tmp_path / "state", "", 8000, Limits(2048, 1.5),
                   Path("/var/cache/labkit"), "slurm", "10.0.0.1", "lab", "/etc/slurm/slurm.conf", 5)
    path = config.write(plan)
    assert HubPlan.load(plan.plan_file) == plan
    c = Config()
    exec(compile(path.read_text(), str(path), "exec"), {"c": c})
    assert c.JupyterHub.spawner_class == "labkit.hub.slurm.LabSlurmSpawner"
    assert c.LabSlurmSpawner.plan_file == str(plan.plan_file) and c.LabSlurmSpawner.req_partition == "lab"
    assert c.JupyterHub.hub_ip == "10.0.0.1" and c.Spawner.poll_interval == 5
    assert plan.limits.slurm_request() == ("2048M", "2")  # Slurm counts whole CPUs: 1.5 asks for 2
    assert Limits().slurm_request() == ("", "")


def test_the_hub_reaches_a_server_at_its_nodes_address() -> None:
    from labkit.hub import slurm

    line = ("NodeName=n2 Arch=x86_64 CoresPerSocket=1 CPUAlloc=1 NodeAddr=198.18.77.12 NodeHostName=n2 "
            "Version=22.05.8 OS=Linux State=MIXED")
    assert slurm.node_address(line) == "198.18.77.12"
    assert slurm.node_address("NodeName=n3 State=DOWN") is None


@pytest.mark.parametrize("hub_ip", [None, "127.0.0.1", "0.0.0.0"])
def test_a_slurm_hub_needs_an_address_the_nodes_reach(hub_ip: str | None, capsys) -> None:
    argv = ["hub", "start", "--count", "1", "--cluster", "slurm", "--state", "/nonexistent/x"]
    assert cli.main(argv + (["--hub-ip", hub_ip] if hub_ip else [])) == 2
    err = capsys.readouterr().err
    assert "labkit: error: --cluster slurm needs --hub-ip" in err and "fix:" in err and "Traceback" not in err
