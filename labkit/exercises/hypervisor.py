"""Notebook 02's exercises: classify hypervisors (KVM with evidence from this host); find your VMM process.

Where the answer is about this host, the checker looks: the evidence line
for KVM must be true here now (``/proc/misc``, ``/dev/kvm``, ``/sys/module``)
or name a guest's QEMU that this notebook really started; the pid must be a
process of this host that holds the learner's own guest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import psutil

from labkit import exercises
from labkit.exercises import Feedback, exercise
from labkit.i18n import _, answers
from labkit.lessons import hosted

#: The hypervisors with one answer (the catalogue of notebook 02 lists most of them).
SETTLED = {"Oracle VirtualBox": "type 2", "VMware Workstation": "type 2", "Parallels Desktop": "type 2",
           "VMware ESXi": "type 1", "Xen": "type 1", "Microsoft Hyper-V": "type 1"}
#: A learner classifies one of each type, and KVM.
PAIRS: tuple[tuple[str, str], ...] = tuple(
    (one, two) for one in SETTLED if SETTLED[one] == "type 1" for two in SETTLED if SETTLED[two] == "type 2")
SIDES = ("type 1", "type 2")


def names() -> list[str]:
    """The names this learner classifies: their pair, and KVM."""
    return [*exercises.target("hypervisor-types", PAIRS), "KVM"]


def _normal(answer: object) -> str:
    """The answer folded, Korean read as English (타입 2 is type 2)."""
    return " ".join(str(answers.in_english(answer) or "").lower().replace("-", " ").split())


def evidence_side(line: str, misc: Path = Path("/proc/misc"), dev: Path = Path("/dev/kvm"),
                  modules: Path = Path("/sys/module")) -> str | None:
    """Which reading of KVM a line printed on this host supports, checked against the host now; None if neither.

    type 1 — KVM is part of this kernel: the ``kvm`` line of ``/proc/misc``,
    ``ls -l /dev/kvm`` (a character device with this host's major and minor),
    or ``ls -d /sys/module/kvm*`` (directories that exist).  type 2 — a
    guest is held by a host process: a line naming QEMU with the pid of a
    guest this process started (``ps``, or the lesson's own line).
    """
    words = line.split()
    if not words:
        return None
    if len(words) == 2 and words[1] == "kvm" and misc.is_file() \
            and any(row.split() == words for row in misc.read_text().splitlines()):
        return "type 1"
    device = re.search(r"^c\S*\s.*?(\d+),\s*(\d+)\s.*\s(/dev/kvm)$", line.strip())
    if device and dev.exists():
        rdev = dev.stat().st_rdev
        if (int(device[1]), int(device[2])) == (os.major(rdev), os.minor(rdev)):
            return "type 1"
    paths = [w for w in words if w.startswith(str(modules / "kvm"))]
    if paths and len(paths) == len(words) and all(Path(p).is_dir() for p in paths):
        return "type 1"
    pids = {int(w) for w in re.findall(r"\b\d+\b", line)}
    if "qemu" in line.lower() and pids & {g.pid for g in hosted.started()}:
        return "type 2"
    return None


@exercise("hypervisor-types")
def hypervisor_types(answers: dict[str, str | None], kvm_evidence: str = "") -> Feedback:
    """The pair has one answer each; KVM takes either side, with a line from this host that supports it."""
    expected = names()
    if set(answers) != set(expected):
        return Feedback(False, _("answer exactly these names: {names}").format(names=", ".join(expected)),
                        (_("copy the names from the line printed above the answer cell"),))
    wrong = sorted(name for name in expected[:2] if _normal(answers[name]) != SETTLED[name])
    if wrong:
        return Feedback(False, _("check {names}").format(names=", ".join(wrong)),
                        (_("does it need a host operating system to run on, or does it run on the hardware itself?"),
                         _("§ 2's list says where each one runs")))
    side = _normal(answers["KVM"])
    if side not in SIDES:
        return Feedback(False, _("KVM: answer 'type 1' or 'type 2' (both are defended; the evidence decides)"),
                        (_("where is the hypervisor's code: in the host kernel, in a host process, or both?"),))
    found = evidence_side(kvm_evidence)
    if found is None:
        return Feedback(False, _("KVM as {side}: the evidence line is not one this host shows now").format(side=side),
                        (_("copy one whole line, as printed by a cell of this notebook on this host"),
                         _("type 1: a line of § 3 about /dev/kvm; type 2: a line of § 4 that shows your guest's QEMU "
                           "process")))
    if found != side:
        return Feedback(False, _("that line is true here, but it supports {found}, not {side}").format(
            found=found, side=side), (_("what does the line show: the kernel, or a process of the host?"),))
    other = "type 2" if side == "type 1" else "type 1"
    return Feedback(True, _("{first} and {second} classified; KVM as {side}, and this host shows it: "
                            "{evidence!r}. The {other} reading has its evidence too — KVM is argued both ways")
                    .format(first=expected[0], second=expected[1], side=side, evidence=kvm_evidence.strip(),
                            other=other))


def _own_guests(parent: int) -> Sequence[int]:
    """Pids of the QEMU guests this process started that are still running."""
    return [g.pid for g in hosted.started() if psutil.pid_exists(g.pid) and _parent(g.pid) == parent]


def _parent(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except psutil.NoSuchProcess:
        return None


@exercise("vmm-process")
def vmm_process(pid: int | None) -> Feedback:
    """Is ``pid`` the host process that holds this notebook's running guest, as the learner found it with ps?"""
    if pid is None:
        return Feedback(False, _("set my_qemu_pid to the pid of your guest's QEMU"),
                        (_("a guest is a process of the host: list the processes with their whole command lines"),
                         _("`ps -eo pid,user,args` lists them; grep for qemu-system and look at each one's -name")))
    if not isinstance(pid, int) or isinstance(pid, bool):
        return Feedback(False, _("my_qemu_pid is a {type}, not a pid (a whole number)").format(type=type(pid).__name__),
                        (_("the first column of ps is the pid"),))
    try:
        seen = hosted.look(pid)
    except psutil.NoSuchProcess:
        return Feedback(False, _("there is no process {pid} on this host now").format(pid=pid),
                        (_("run your ps command again: is your guest still running?"),))
    except (psutil.AccessDenied, PermissionError):
        return Feedback(False, _("process {pid} belongs to another user").format(pid=pid),
                        (_("look for your own user in ps's USER column"),))
    if pid not in _own_guests(os.getpid()):
        return Feedback(False, _("process {pid} ({name}, user {user}) does not hold your guest").format(
                            pid=pid, name=seen.name, user=seen.user),
                        (_("several guests may run on this host: yours has 'hosted' and your user name in its -name"),
                         _("is the process you picked a QEMU at all? `ps -o args -p PID` shows its command line")))
    return Feedback(True, _("pid {pid} holds your guest: an ordinary host process (user {user}, {threads} threads, "
                            "{rss_mib} MiB resident) that the host kernel schedules like any other").format(
                                pid=pid, user=seen.user, threads=seen.threads, rss_mib=seen.vm_rss >> 20))
