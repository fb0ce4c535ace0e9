"""The hub's spawner: a student's JupyterLab as their own local process, in their own control group.

JupyterHub's :class:`~jupyterhub.spawner.LocalProcessSpawner` (the hub runs
as root, no systemd needed) starts ``jupyterhub-singleuser`` from the lab's
shared read-only venv as the student.  This spawner adds what a lab host
needs around it:

- before the first start, the student's own copy of the notebooks
  (:func:`labkit.hub.accounts.provide_notebooks`), opened in JupyterLab;
- the shared read-only guest image cache (``LABKIT_SHARED_CACHE``), so nobody
  builds or downloads a kernel;
- the memory and CPU limits, by moving the server into the student's control
  group before it drops root (:mod:`labkit.hub.limits`);
- when the server stops, nothing of the student's keeps running: their
  ``labkit cleanup --force`` removes their guests, libvirt domains and run
  dir while their session libvirtd still answers, then every process left
  in their group, and then of their account (a clean-up may start a
  daemon outside the group), is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess

import psutil
from jupyterhub.spawner import LocalProcessSpawner
from traitlets import HasTraits, Unicode

from labkit import runtime
from labkit.hub import accounts, limits
from labkit.hub.plan import HubPlan

RUNUSER = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "/usr/sbin/runuser"


class PlanMixin(HasTraits):
    """What every lab spawner reads from the hub's plan: the student's account, the lab's venv and image cache.

    Mixed into a JupyterHub spawner (here, and :class:`labkit.hub.slurm.LabSlurmSpawner`).
    """

    plan_file = Unicode(config=True, help="the hub plan (JSON) written by `labkit hub`")

    @property
    def plan(self) -> HubPlan:
        return HubPlan.load(self.plan_file)

    @property
    def account(self) -> accounts.Account:
        account = accounts.lookup(self.user.name)  # type: ignore[attr-defined]  # the spawner's user
        assert account is not None  # the hub only spawns for its students' accounts
        return account

    def get_env(self) -> dict[str, str]:
        env = super().get_env()  # type: ignore[misc]  # the spawner's
        plan = self.plan
        env["PATH"] = f"{plan.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
        env["LABKIT_SHARED_CACHE"] = str(plan.shared_cache)
        return env

    def lab_server(self) -> None:
        """The student's own copy of the notebooks, and their server on it: JupyterLab in ``~/kvm-lab``."""
        accounts.provide_notebooks(self.account, self.plan.notebooks)
        self.notebook_dir = str(self.account.lab)
        self.default_url = "/lab"


class LabSpawner(PlanMixin, LocalProcessSpawner):
    """LocalProcessSpawner + the lab's notebooks, shared cache, limits and a clean stop."""

    def _group(self) -> limits.StudentGroup | None:
        support = limits.detect()
        if support.version is None or not self.plan.limits.memory_mib and not self.plan.limits.cpus:
            return None
        return limits.StudentGroup(support, self.user.name)

    def make_preexec_fn(self, name: str):
        become_student = super().make_preexec_fn(name)
        group = self._group()

        def preexec() -> None:  # runs in the child, as root, before it becomes the student
            if group is not None:
                group.join(os.getpid())
            become_student()

        return preexec

    async def start(self):
        self.lab_server()
        group = self._group()
        if group is not None:
            group.create(self.plan.limits)
        self.cmd = [str(self.plan.venv / "bin/jupyterhub-singleuser")]
        return await super().start()

    async def stop(self, now: bool = False) -> None:
        try:
            await super().stop(now=now)
        finally:  # in a thread: the hub stops every student's server at once
            await asyncio.get_running_loop().run_in_executor(None, self.clean_up_after)

    def clean_up_after(self) -> None:
        """Nothing of the student's outlives their server: guests, domains, run dir, processes."""
        account = self.account
        subprocess.run([RUNUSER, "-u", account.name, "--", "env", "-i", f"HOME={account.home}",
                        "PATH=/usr/bin:/bin", str(self.plan.venv / "bin/labkit"), "cleanup", "--force"],
                       capture_output=True, text=True, timeout=120)
        group = self._group()
        if group is not None:
            group.kill_all()
        # then every process of the student's account, also outside their group: the session libvirtd that
        # the clean-up above started (as a child of this hub, not of their server) when theirs had exited
        left = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == account.uid]
        for proc in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(left, timeout=10)
        if group is not None:
            group.remove()
        run_dir = runtime.run_dir_of(runtime.user_name(account.uid))
        if run_dir.is_dir() and not run_dir.is_symlink() and run_dir.stat().st_uid == account.uid:
            shutil.rmtree(run_dir, ignore_errors=True)  # never follows the student's links
