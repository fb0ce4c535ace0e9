"""A class on a Slurm cluster: the hub spawns each student's server as a Slurm job on network-namespace nodes.

The test makes the cluster (:mod:`slurmcluster`: munged, slurmctld, two
slurmd "nodes" each in its own network namespace with its own address and
hostname, cgroup memory caps) and runs the instructor's command,
``labkit hub start --cluster slurm``.  Three students log in through the
hub at once; their servers land on both nodes (where each runs is read from
Slurm and from the kernel's own hostname), each runs notebook 01 in their
home, sees only their own things, and their doctor says whether the node
gives them KVM or TCG.  Then one node fails (every process in
it is killed): the hub reports that student's server gone, the student
starts again on the other node and finds their work in their home.  The
instructor's ``labkit class status`` reads every student's checks across
nodes.  Stopping the hub and the cluster leaves no job, process,
namespace, link, control group or account.

Notebook 01 and not 04/05: the single-host hub test runs those through the
hub already; here what is tested is the placement, the node loss and the
clean-up, and 01 (no guest) keeps the suite short.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

import slurmcluster
import students
from hubclient import HubClientError, Student, free_port, remove_account, start_hub, stop_class
from labkit import runtime
from labkit.hub import HubPlan, Limits, accounts, server

NAMES = ("labkit-slurm1", "labkit-slurm2", "labkit-slurm3")
LIMITS = Limits(memory_mib=1024, cpus=1.0)
EXERCISES_01 = {"stop-signal", "page-faults"}


def _why_not() -> str | None:
    if (why := students.skip_unless_root()) is not None:
        return why
    if missing := slurmcluster.missing_tools():
        return f"Slurm is not installed ({', '.join(missing)} missing): bash scripts/setup.sh --cluster"
    if shutil.which("batchspawner-singleuser", path=str(students.TOP / ".venv/bin")) is None:
        return "batchspawner is not in .venv: bash scripts/setup.sh --cluster"
    return None


pytestmark = [pytest.mark.hub, pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")]

#: What each student runs in a kernel of their server: notebook 01 in their home, then what they can see.
STUDENT_CODE = """
import json, os, pathlib, socket
from labkit import doctor, host, runner
lab = pathlib.Path.home() / "kvm-lab"
results = runner.run([lab / "01_kernel.ipynb"], lab / "runs", {{}}, progress=False)
(lab / "mine.txt").write_text({me!r})

def denied(path):
    try:
        os.listdir(path)
    except PermissionError:
        return True
    return False

print("PROBE " + json.dumps({{"host": socket.gethostname(), "uid": os.getuid(), "cwd": os.getcwd(),
    "kvm": doctor.check_kvm(host.inspect()).detail, "kvm_usable": os.access("/dev/kvm", os.R_OK | os.W_OK),
    "ok": [r.ok for r in results], "failures": [str(r.failure) for r in results if not r.ok],
    "others_homes_denied": [denied(pathlib.Path("/home") / o) for o in {others!r}]}}))
"""
WHERE = "import pathlib, socket; print(socket.gethostname(), (pathlib.Path.home() / 'kvm-lab/mine.txt').read_text())"


async def enter(url: str, name: str, password: str) -> tuple[Student, float]:
    """The student logs in and starts their server; the seconds from login to a ready server."""
    student = Student(url, name)
    began = time.monotonic()
    await student.log_in(password)
    await student.start_server(timeout=120)
    return student, time.monotonic() - began


async def work(student: Student) -> dict:
    """The student runs notebook 01 in their home and probes what they can see."""
    others = [n for n in NAMES if n != student.name]
    run = await student.execute(STUDENT_CODE.format(me=student.name, others=others), timeout=180)
    assert run.error is None, f"{student.name}: {run.error}\n{run.output}"
    return json.loads(run.output.split("PROBE ", 1)[1])


async def server_gone(student: Student, timeout: float = 60) -> float:
    """Seconds until the hub reports the student's server as gone."""
    began = time.monotonic()
    while (await student.request(f"/hub/api/users/{student.name}")).get("servers"):
        assert time.monotonic() - began < timeout, f"the hub still lists {student.name}'s server"
        await asyncio.sleep(0.5)
    return time.monotonic() - began


def running_jobs(cluster: slurmcluster.Cluster) -> dict[str, tuple[str, str]]:
    """user → (job id, node) of the cluster's running jobs."""
    rows = [line.split() for line in cluster.run("squeue", "-h", "-t", "RUNNING", "-o", "%u %i %N").splitlines()]
    return {user: (job, node) for user, job, node in rows}


def test_a_class_on_two_slurm_nodes_survives_a_node_and_leaves_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    passwords = {name: secrets.token_urlsafe(12) for name in NAMES}
    hub = None
    with students.exclusive(), students.shared_cache() as cache, slurmcluster.cluster() as cluster:
        try:
            ready = time.monotonic()
            for name in NAMES:  # a leftover of an interrupted run
                remove_account(name)
            secret = tmp_path / "class.txt"
            secret.write_text("".join(f"{name}:{passwords[name]}\n" for name in NAMES))
            secret.chmod(0o600)
            plan = HubPlan(students.TOP, NAMES, tmp_path / "hub", "127.0.0.1", free_port(), LIMITS, cache)
            hub = start_hub(plan, secret, "--cluster", "slurm", "--hub-ip", slurmcluster.CONTROLLER,
                            "--slurm-conf", str(cluster.conf), "--poll-seconds", "1")
            up = time.monotonic() - ready
            accts = {name: accounts.lookup(name) for name in NAMES}

            async def lose_a_node(student: Student, node: slurmcluster.Node) -> tuple[dict, float, float, str]:
                """The student works, then their node fails; the hub says so, they start again elsewhere."""
                probe = await work(student)
                await asyncio.to_thread(cluster.power_off, node)
                gone_after = await server_gone(student)
                began = time.monotonic()
                await student.start_server(timeout=120)  # the student presses Start again
                return probe, gone_after, time.monotonic() - began, (await student.execute(WHERE)).output

            async def the_class() -> tuple[dict, dict, dict, dict]:
                entered = await asyncio.gather(*(enter(plan.url, n, passwords[n]) for n in NAMES))
                by_name = {s.name: s for s, _ in entered}
                login_to_server = {s.name: round(t, 1) for s, t in entered}
                jobs = running_jobs(cluster)
                caps = {n: slurmcluster.job_memory_limit_mib(node, accts[n].uid, job)
                        for n, (job, node) in jobs.items()}
                asked = dict(line.split(maxsplit=1) for line in cluster.run(
                    "squeue", "-h", "--noconvert", "-t", "RUNNING", "-o", "%u %C %m").splitlines())  # CPUs, memory
                # one node fails: the student alone on it loses their server, the others keep working meanwhile
                nodes = [node for _, node in jobs.values()]
                victim = next(n for n in NAMES if nodes.count(jobs[n][1]) == 1)
                node = next(x for x in cluster.nodes if x.name == jobs[victim][1])
                others = [n for n in NAMES if n != victim]
                lost, *worked = await asyncio.gather(lose_a_node(by_name[victim], node),
                                                     *(work(by_name[n]) for n in others))
                probes = {victim: lost[0], **dict(zip(others, worked))}
                after = {victim: (lost[2], running_jobs(cluster)[victim], lost[3].split())}
                unharmed = [bool((await by_name[n].request(f"/hub/api/users/{n}"))["servers"]) for n in others]
                for student in by_name.values():
                    student.close()
                return {"login_to_server": login_to_server, "gone_after": lost[1], "victim": victim,
                        "node": node.name, "caps": caps, "asked": asked,
                        "unharmed": unharmed}, jobs, probes, after

            try:
                timing, jobs, probes, after = asyncio.run(the_class())
            except HubClientError as exc:  # the hub's log says why (a job that died: its log in the student's home)
                log = server.log_file(plan).read_text(errors="replace").splitlines()
                pytest.fail(f"{exc}\nthe hub's log ends:\n" + "\n".join(log[-60:]))
            class_table = subprocess.run([str(plan.venv / "bin/labkit"), "class", "status", "--state",
                                          str(plan.state_dir), "--json"], capture_output=True, text=True)
            hub.send_signal(signal.SIGTERM)
            hub_output = hub.communicate(timeout=120)[0]
            print(f"\nthe Slurm class: lock, image and cluster {ready - started:.0f} s; hub up {up:.0f} s; "
                  f"login → running server {timing['login_to_server']} s; "
                  f"node {timing['node']} lost, its server reported gone after {timing['gone_after']:.1f} s, "
                  f"again in {after[timing['victim']][0]:.1f} s; jobs {jobs}")

            # the servers ran where Slurm put them, on both nodes, each as its student, in their own copy
            assert {node for _, node in jobs.values()} == {n.name for n in cluster.nodes}, jobs
            for name, probe in probes.items():
                assert probe["ok"] == [True], f"{name}: {probe['failures']}"
                assert probe["host"] == jobs[name][1], (name, probe, jobs)
                assert probe["uid"] == accts[name].uid and probe["cwd"] == str(accts[name].lab)
                assert all(probe["others_homes_denied"]), (name, probe)
                # a node whose /dev/kvm the student cannot use serves TCG, and their doctor says so
                assert probe["kvm_usable"] or "TCG" in probe["kvm"] or "not usable" in probe["kvm"], probe["kvm"]
                # the memory cap Slurm put on the student's running job, read back from the kernel
                assert timing["caps"][name] == LIMITS.memory_mib, timing["caps"]
                assert timing["asked"][name] == f"1 {LIMITS.memory_mib}M", timing["asked"]  # the job's CPUs, memory
            # after the node's loss: a new job on the other node, and the student's work still in their home
            victim = timing["victim"]
            _, (job, node), (host, mine) = after[victim]
            assert node != timing["node"] and host == node and mine == victim and job != jobs[victim][0]
            assert all(timing["unharmed"])  # the others' servers, on the node that stayed up, still run
            assert (accts[victim].lab / "runs/01_kernel.ipynb").stat().st_uid == accts[victim].uid
            # the instructor's view across nodes: each student's checks, from their own file
            assert class_table.returncode == 0, class_table.stderr
            rows = {row["user"]: row for row in json.loads(class_table.stdout)["students"]}
            assert set(rows) == set(NAMES) and all(set(r["attempts"]) == EXERCISES_01 for r in rows.values()), rows

            assert hub.returncode == 0 and "left behind" not in hub_output, hub_output
            assert server.leftovers(plan) == []
            assert running_jobs(cluster) == {} and not cluster.run("squeue", "-h", "-t", "PENDING")
            for name, acct in accts.items():
                assert not runtime.run_dir_of(name).exists()
                assert not [p for p in psutil.process_iter(["uids", "status"])
                            if p.info["uids"].real == acct.uid and p.info["status"] != psutil.STATUS_ZOMBIE]
        finally:
            stop_class(hub, NAMES)
    assert slurmcluster.leftovers(cluster.folder) == []
    assert all(accounts.lookup(name) is None for name in NAMES)
    print(f"the Slurm class test: {time.monotonic() - started:.0f} s")
