"""The hub's spawner on a Slurm cluster: each student's JupyterLab is a Slurm job on a compute node.

batchspawner's :class:`~batchspawner.SlurmSpawner` submits a job script with
``sbatch`` as the student, asks ``squeue`` where it runs, and the server
tells the hub its port (``batchspawner-singleuser``).  The lab adds:

- the student's own copy of the notebooks and the shared read-only venv and
  image cache (the nodes see the same paths: NFS on a real cluster);
- the memory and CPU limits as the job's request (``--mem``,
  ``--cpus-per-task``); Slurm enforces them where slurm.conf says so
  (``TaskPlugin=task/cgroup`` with ``ConstrainRAMSpace``), and the job's
  control group holds every process it started (``proctrack/cgroup``);
- a job that fails with its node is not queued again (``--no-requeue``):
  the hub reports the server gone, and the student starts a new one on a
  node that is up; their work is in their home, not on the node;
- after the server, the student's ``labkit cleanup --force`` on the node;
- the hub reaches the server at the node's address (``NodeAddr``), not by a
  host name the hub's host may not resolve.

Nodes without a usable ``/dev/kvm`` serve TCG; the student's ``labkit
doctor`` says which they got, as on any host.
"""

from __future__ import annotations

import re
import shutil

from batchspawner import SlurmSpawner
from traitlets import Unicode

from labkit.hub.spawner import PlanMixin

RUNUSER = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "/usr/sbin/runuser"

#: The job: the server, then the student's clean-up on the node (Slurm's SIGTERM reaches the server too).
JOB_SCRIPT = """#!/bin/bash
#SBATCH --job-name=labkit-hub
#SBATCH --output={{homedir}}/.cache/labkit-hub/server-%j.log
#SBATCH --chdir={{homedir}}
#SBATCH --export={{keepvars}}
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --no-requeue
{% if partition %}#SBATCH --partition={{partition}}
{% endif %}{% if memory %}#SBATCH --mem={{memory}}
{% endif %}{% if nprocs %}#SBATCH --cpus-per-task={{nprocs}}
{% endif %}
echo "labkit hub: job $SLURM_JOB_ID on $(hostname)"
{{cmd}} &
server=$!
trap 'kill -TERM $server' TERM
wait $server
wait $server
labkit cleanup --force
python -c 'import shutil; from labkit import runtime; shutil.rmtree(runtime.run_dir_of(), ignore_errors=True)'
"""


def node_address(scontrol_show_node: str) -> str | None:
    """``NodeAddr`` from ``scontrol -o show node NAME``'s line (None when it has none)."""
    found = re.search(r"\bNodeAddr=(\S+)", scontrol_show_node)
    return found.group(1) if found else None


class LabSlurmSpawner(PlanMixin, SlurmSpawner):
    """SlurmSpawner + the lab's notebooks, shared venv and cache, limits as the job's request, node addresses."""

    batch_script = Unicode(JOB_SCRIPT).tag(config=True)
    # the hub runs as root: the student submits, queries and cancels their own job (no sudo needed)
    exec_prefix = Unicode(f"{RUNUSER} -u {{username}} --").tag(config=True)
    batch_submit_cmd = Unicode("sh -c 'mkdir -p \"$HOME/.cache/labkit-hub\" && exec sbatch --parsable'"
                               ).tag(config=True)

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        if self.plan.slurm_conf:
            env["SLURM_CONF"] = self.plan.slurm_conf
        return env

    async def run_command(self, cmd, input=None, env=None):
        """batchspawner's ``squeue``/``scancel`` run with the hub's environment: give them the cluster's slurm.conf."""
        if env is None and self.plan.slurm_conf:
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "SLURM_CONF": self.plan.slurm_conf}
        return await super().run_command(cmd, input=input, env=env)

    async def start(self):
        plan = self.plan
        self.lab_server()
        self.req_memory, self.req_nprocs = plan.limits.slurm_request()
        self.req_partition = plan.partition
        self.cmd = [str(plan.venv / "bin/jupyterhub-singleuser")]
        self.batchspawner_singleuser_cmd = str(plan.venv / "bin/batchspawner-singleuser")
        node, port = await super().start()
        shown = await self.run_command(f"scontrol -o show node {node}")
        return node_address(shown) or node, port
