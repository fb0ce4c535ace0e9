"""The hub's parts without a hub: cgroup detection and limits on recorded hierarchies, the plan, the config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from traitlets.config import Config

from labkit import cli
from labkit.errors import InvalidOptionError
from labkit.hub import HubPlan, Limits, accounts, config, limits

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
    for path in (source / "01_kernel.ipynb", source / "ko" / "01_kernel.ipynb", source / "notes.txt"):
        path.write_text("{}")
    home = tmp_path / "home"
    home.mkdir()
    student = accounts.Account("alice", os.getuid(), os.getgid(), home)
    copied = accounts.provide_notebooks(student, source)
    assert sorted(p.relative_to(home) for p in copied) == [Path("kvm-lab/01_kernel.ipynb"),
                                                           Path("kvm-lab/ko/01_kernel.ipynb")]
    assert accounts.provide_notebooks(student, source) == []  # the student's copies (their work) are kept
    # a student who swapped ko/ for a link to somewhere else gets nothing written there
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / "kvm-lab" / "ko" / "01_kernel.ipynb").unlink()
    (home / "kvm-lab" / "ko").rmdir()
    (home / "kvm-lab" / "ko").symlink_to(elsewhere)
    assert accounts.provide_notebooks(student, source) == [] and list(elsewhere.iterdir()) == []
