"""``labkit hub start`` from a plan: accounts, the shared image, then JupyterHub until Ctrl-C or SIGTERM.

What the instructor's command does after its options are parsed: refuse
without root, check every student name and the password file before
anything is touched, hold the hub's state folder and port
(:mod:`.claim`), make the accounts (:func:`.accounts.enroll`), build the
shared read-only guest image, say which limits and which process privacy
the students get, run JupyterHub (:mod:`.server`) and, however it ends,
report what it left behind.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from labkit.errors import AccessDeniedError
from labkit.hub import accounts, claim, limits
from labkit.hub.plan import HubPlan


def start(plan: HubPlan, passwords: Path | None = None) -> int:
    """Run the hub of ``plan`` in the foreground; 0 when stopped by Ctrl-C/SIGTERM with nothing left behind."""
    if os.geteuid() != 0:
        raise AccessDeniedError("the hub creates accounts and runs each student's server as them: it needs root",
                                "sudo ./kvmlab hub start ...")
    given = accounts.read_passwords(passwords) if passwords else {}
    for name in plan.students:
        accounts.check_student(name)
    with claim.claim(plan):  # before anything is touched: one hub per state folder and port
        return _serve(plan, given)


def _interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM stops the hub the way Ctrl-C does (servers, proxy, then the leftover check)."""
    raise KeyboardInterrupt


def _prepare(plan: HubPlan, given: dict[str, str]) -> None:
    """Accounts and the shared read-only guest image (quick when it is there already), and what students get."""
    from labkit import images
    from labkit.hub import privacy

    made = accounts.enroll(plan.students, given, plan.state_dir)
    if made is not None:
        print(f"new accounts' passwords: {made}")
    images.tiny_guest(into=plan.shared_cache, progress=False)
    print(limits_report(plan))
    seen = privacy.process_privacy()
    print(f"process privacy: {seen.detail}" + ("" if seen.hidden else f"; fix: {privacy.FIX}"))


def _serve(plan: HubPlan, given: dict[str, str]) -> int:
    """JupyterHub until Ctrl-C/SIGTERM; 1 if it died by itself or left something."""
    from labkit.hub import server  # imports nothing of JupyterHub's; the spawner does, inside the hub

    _prepare(plan, given)
    signal.signal(signal.SIGTERM, _interrupt)
    asked_to_stop = False
    try:
        with server.running(plan) as proc:
            print(f"JupyterHub for {len(plan.students)} students at {plan.url}/ (log: {server.log_file(plan)}); "
                  "Ctrl-C stops it", flush=True)
            try:
                proc.wait()
            except KeyboardInterrupt:
                asked_to_stop = True
                print("stopping the hub and every student's server...", flush=True)
        if not asked_to_stop:
            print(f"labkit: error: JupyterHub exited by itself (status {proc.returncode})\n"
                  f"  fix: read {server.log_file(plan)}", file=sys.stderr)
    finally:  # also when JupyterHub failed to start: what it left is reported
        left = server.leftovers(plan)
        for line in left:
            print(f"left behind: {line}", file=sys.stderr)
    return 1 if left or not asked_to_stop else 0


def limits_report(plan: HubPlan) -> str:
    """The per-student limits of a hub on this host, and whether its control groups enforce them."""
    if plan.cluster == "slurm":
        memory, cpus = plan.limits.slurm_request()
        return (f"limits per student: the Slurm job asks for {memory or 'no'} memory and {cpus or 'no'} CPUs — "
                "enforced where the cluster's slurm.conf constrains jobs (TaskPlugin=task/cgroup)")
    support = limits.detect()
    return (f"limits per student: {plan.limits.memory_mib or 'no'} MiB, {plan.limits.cpus or 'no'} CPU quota — "
            + (f"enforced ({support.reason})" if support.version else f"NOT enforced: {support.reason}"))
