"""A real Slurm cluster on this host for tests: slurmctld and slurmd "nodes", each in a network namespace.

Debian's ``slurm-wlm`` daemons, run by root from a private folder: munged
with a fresh key, slurmctld on the host side of a bridge, and one slurmd
per node in its own network namespace (its own address on the bridge) and
its own UTS namespace (its own hostname, from which slurmd knows its
NodeName).  Each job gets a private /tmp (``job_container/tmpfs``), gone
with the job — unless the lab itself lies under /tmp (a clone there, as CI's may be), which a private /tmp
would hide from the job (its venv, ``batchspawner-singleuser``): then /tmp stays shared (:data:`PRIVATE_TMP`) —
and a memory cap in its control group (``task/cgroup``).
The nodes share the host's filesystem — as a real cluster's nodes share
the lab, the image cache and the homes over NFS — and traffic stays on
the bridge, whose addresses (198.18.0.0/15, reserved for benchmarks by
RFC 2544) route nowhere else.

Pitfalls measured on these machines (/work/shared/notes/platform.md):
``SlurmctldHost`` must be the host's own hostname with the bridge address;
slurmd is started with ``nsenter --net`` (``ip netns exec`` remounts /sys
and slurmd then finds no cgroup filesystem); these hosts' cgroups are v1
controllers under a tmpfs.

:func:`cluster` brings it up and, however the test ends, tears everything
down: jobs, every process in each node's namespace, the daemons, the
namespaces, links and the folder; :func:`leftovers` says what outlived it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from framework import TOP

PREFIX = "lkslurm"
BRIDGE = f"{PREFIX}0"
SUBNET = "198.18.77"
CONTROLLER = f"{SUBNET}.1"
SLURM_TOOLS = ("slurmctld", "slurmd", "munged", "sbatch")


def missing_tools() -> list[str]:
    return [t for t in SLURM_TOOLS if shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]


@dataclass
class Node:
    """One compute node: a network namespace (``netns``), its address and hostname, and its slurmd."""

    name: str
    address: str
    slurmd: subprocess.Popen | None = None

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.name}"

    def pids(self) -> list[int]:
        """Every process in the node's network namespace (slurmd, slurmstepd, the jobs)."""
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


@dataclass
class Cluster:
    folder: Path
    nodes: list[Node]
    munged: subprocess.Popen | None = None
    slurmctld: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    def run(self, *argv: str, check: bool = True) -> str:
        """A Slurm client command (``sinfo``, ``squeue``, ``scontrol`` …) against this cluster; its stdout."""
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=check, timeout=30).stdout

    def node_states(self) -> dict[str, str]:
        return dict(line.split() for line in self.run("sinfo", "-h", "-N", "-o", "%N %T").splitlines())

    def jobs(self) -> list[str]:
        """``id user state node`` of every job slurmctld still knows (also finished ones it keeps a while)."""
        return self.run("squeue", "-h", "-t", "all", "-o", "%i %u %T %N").splitlines()

    def wait_for(self, what: str, ok, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            dead = [p.args[0] for p in (self.munged, self.slurmctld) if p is not None and p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-1500:]
                                 for p in sorted([*self.folder.glob("*.log"), *self.folder.glob("*.out")]))
                why = f"{', '.join(dead)} exited" if dead else f"not within {timeout:.0f} s"
                raise AssertionError(f"the test cluster: {what}: {why}\n{logs}")
            time.sleep(0.2)

    def power_off(self, node: Node) -> None:
        """The node fails: SIGKILL to every process in it (slurmd, slurmstepd, the students' servers)."""
        while pids := node.pids():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        if node.slurmd is not None:
            node.slurmd.wait()


SLURM_CONF = """\
ClusterName=labkit
SlurmctldHost={host}({controller})
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={folder}/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={folder}/ctld
SlurmdSpoolDir={folder}/spool-%n
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd-%n.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd-%n.log
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory,CR_LLN
SchedulerType=sched/builtin
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
SlurmdTimeout={slurmd_timeout}
KillWait=5
MessageTimeout=5
InactiveLimit=0
MinJobAge=300
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobContainerType={job_container}
PrologFlags=Contain
{nodes}
PartitionName=lab Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


#: Whether each job gets a private /tmp: not when the lab's checkout is under /tmp, where the job would not find it.
PRIVATE_TMP = not TOP.is_relative_to("/tmp")

#: Each job's memory cap in its control group (these hosts: cgroup v1); cores are not pinned, because every
#: node here shares the host's two (each would pin its first job to CPU 0).
CGROUP_CONF = "CgroupPlugin=cgroup/v1\nConstrainRAMSpace=yes\nConstrainSwapSpace=no\nConstrainCores=no\n"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((CONTROLLER, 0))
        return sock.getsockname()[1]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _network(nodes: list[Node]) -> None:
    _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "add", f"{CONTROLLER}/24", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    for node in nodes:
        _ip("netns", "add", node.netns)
        host_end, node_end = f"{PREFIX}-{node.name}", f"{PREFIX}-{node.name}n"
        _ip("link", "add", host_end, "type", "veth", "peer", "name", node_end)
        _ip("link", "set", host_end, "master", BRIDGE, "up")
        _ip("link", "set", node_end, "netns", node.netns)
        for args in (("link", "set", "lo", "up"), ("link", "set", node_end, "name", "eth0"),
                     ("addr", "add", f"{node.address}/24", "dev", "eth0"), ("link", "set", "eth0", "up")):
            _ip("-n", node.netns, *args)


def _munge_key(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(1024))


def _start(argv: list[str], folder: Path, log: str) -> subprocess.Popen:
    with open(folder / log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def start_slurmd(cluster: Cluster, node: Node) -> None:
    """slurmd of ``node``, in its network namespace and a UTS namespace with the node's hostname."""
    node.slurmd = _start(["nsenter", f"--net=/run/netns/{node.netns}", "unshare", "--uts", "sh", "-c",
                          f'hostname {node.name} && exec slurmd -D -f "$0"', str(cluster.conf)],
                         cluster.folder, f"slurmd-{node.name}.out")


@contextlib.contextmanager
def cluster(names: tuple[str, ...] = ("n1", "n2"), cpus: int = 4, memory_mib: int = 4096,
            slurmd_timeout: int = 5) -> Iterator[Cluster]:
    """A cluster of ``names`` (each ``cpus`` CPUs and ``memory_mib`` MiB for jobs); torn down after.

    Its folder (config, keys, logs, spools) is readable by all: students' ``sbatch`` reads slurm.conf.
    ``slurmd_timeout``: after how many seconds without an answer slurmctld marks a node DOWN (Slurm's default is
    300 s; a short one lets a test see a node's loss).
    """
    nodes = [Node(name, f"{SUBNET}.{11 + i}") for i, name in enumerate(names)]
    reclaim(nodes)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-", dir="/var/tmp"))  # job_container/tmpfs refuses /tmp
    folder.chmod(0o755)
    made = Cluster(folder, nodes)
    try:
        _network(nodes)
        (folder / "ctld").mkdir()
        _munge_key(folder / "munge.key")
        made.munged = _start(["munged", "--foreground", "--force", f"--socket={folder}/munge.sock",
                              f"--key-file={folder}/munge.key", f"--pid-file={folder}/munged.pid",
                              f"--log-file={folder}/munged.log", f"--seed-file={folder}/munge.seed"],
                             folder, "munged.out")
        lines = [f"NodeName={n.name} NodeAddr={n.address} NodeHostname={n.name} CPUs={cpus} "
                 f"RealMemory={memory_mib} State=UNKNOWN" for n in nodes]
        made.conf.write_text(SLURM_CONF.format(
            host=socket.gethostname().split(".")[0], controller=CONTROLLER, folder=folder, ctld_port=_free_port(),
            slurmd_port=_free_port(), slurmd_timeout=slurmd_timeout, nodes="\n".join(lines),
            job_container="job_container/tmpfs" if PRIVATE_TMP else "job_container/none"))
        (folder / "cgroup.conf").write_text(CGROUP_CONF)
        (folder / "job_container.conf").write_text(f"AutoBasePath=true\nBasePath={folder}/jobtmp\n")
        made.wait_for("munged's socket", (folder / "munge.sock").exists, 20)
        made.slurmctld = _start(["slurmctld", "-D", "-c", "-f", str(made.conf)], folder, "slurmctld.out")
        for node in nodes:
            start_slurmd(made, node)
        made.wait_for("every node idle", lambda: _all_idle(made), 60)
        yield made
    finally:
        tear_down(made)


def reclaim(nodes: list[Node]) -> None:
    """Tear down what a run killed before its ``finally`` left (seen: pytest interrupted from outside ended its
    workers mid-test, and munged, slurmctld and both slurmd outlived them): its daemons (found by the folder in
    their command lines), then its namespaces, links and folder as :func:`tear_down` does.  Without this the
    next cluster's bridge already existed ("File exists")."""
    folders = sorted(Path("/var/tmp").glob(f"{PREFIX}-*"))  # the caller holds students.exclusive(): none is live
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(folder) in arg for folder in folders for arg in proc.info["cmdline"] or ()):
            with contextlib.suppress(psutil.Error):
                proc.kill()
    for folder in folders or [Path("/var/tmp") / PREFIX]:  # none: namespaces and links alone, if any were left
        tear_down(Cluster(folder, nodes))


def _all_idle(made: Cluster) -> bool:
    try:
        states = made.node_states()
    except subprocess.CalledProcessError:
        return False
    return len(states) == len(made.nodes) and all(s == "idle" for s in states.values())


def _stop(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tear_down(made: Cluster) -> None:
    """Jobs cancelled, every node's processes and the daemons stopped, namespaces, links and folder removed."""
    if made.slurmctld is not None and made.slurmctld.poll() is None:
        subprocess.run(["scancel", "--full", "--quiet", "--state=RUNNING"], env=made.env, capture_output=True)
        subprocess.run(["scancel", "--quiet", "--state=PENDING"], env=made.env, capture_output=True)
    for node in made.nodes:
        _stop(node.slurmd)
        if os.path.exists(f"/run/netns/{node.netns}"):
            made.power_off(node)
            subprocess.run(["ip", "netns", "delete", node.netns], capture_output=True)
    _stop(made.slurmctld)
    _stop(made.munged)
    for mount in reversed(mounts_under(made.folder)):  # a failed node's jobs leave their private /tmp's mounts
        subprocess.run(["umount", "--lazy", mount], capture_output=True)
    for node in made.nodes:
        subprocess.run(["ip", "link", "delete", f"{PREFIX}-{node.name}"], capture_output=True)
        for group in node_cgroups(node.name):  # slurmd leaves its (empty) groups when it stops
            for sub in sorted(group.rglob("*"), key=lambda p: -len(p.parts)):
                if sub.is_dir():
                    with contextlib.suppress(OSError):
                        sub.rmdir()
            with contextlib.suppress(OSError):
                group.rmdir()
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
    shutil.rmtree(made.folder, ignore_errors=True)


def mounts_under(folder: Path) -> list[str]:
    """Mount points under ``folder`` (job_container/tmpfs binds each job's private /tmp there), in mount order."""
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p.startswith(f"{folder}/")]


def node_cgroups(name: str) -> list[Path]:
    """The control groups slurmd of node ``name`` made (``slurm_<node>`` in each v1 hierarchy)."""
    return sorted(CGROUP_ROOT.glob(f"*/slurm_{name}"))


def job_memory_limit_mib(node: str, uid: int, job: str) -> int:
    """The memory cap Slurm's task/cgroup put on a job, read back from the kernel."""
    raw = (CGROUP_ROOT / f"memory/slurm_{node}/uid_{uid}/job_{job}/memory.limit_in_bytes").read_text()
    return int(raw) >> 20


def leftovers(folder: Path, names: tuple[str, ...] = ("n1", "n2")) -> list[str]:
    """What of a test cluster outlived it: namespaces, links, daemons or processes of its folder, the folder."""
    found = [f"network namespace {ns}" for ns in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                                text=True).stdout.split() if ns.startswith(PREFIX)]
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout.split("\n")
    found += [f"link {line.split()[0]}" for line in links if line.startswith(PREFIX)]
    for proc in psutil.process_iter(["pid", "cmdline"]):
        argv = proc.info["cmdline"] or []
        if any(str(folder) in arg for arg in argv) or (argv and Path(argv[0]).name in ("slurmstepd",)):
            found.append(f"process {proc.info['pid']}: {' '.join(argv)[:100]}")
    found += [f"control group {g}" for name in names for g in node_cgroups(name)]
    found += [f"mount {m}" for m in mounts_under(folder)]
    if folder.exists():
        found.append(f"folder {folder}")
    return found
