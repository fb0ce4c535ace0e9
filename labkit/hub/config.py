"""JupyterHub's configuration for a lab hub, from a :class:`~labkit.hub.plan.HubPlan`.

The ``jupyterhub_config.py`` that ``labkit hub start`` writes is two lines
that call :func:`apply`; everything the hub is told lives here, where it is
tested: PAM authentication of the listed students (real system accounts),
the lab spawner, the npm-installed configurable-http-proxy, and state in the
hub's private folder.
"""

from __future__ import annotations

from pathlib import Path

from labkit.hub.plan import HubPlan

CONFIG_FILE = "jupyterhub_config.py"
#: Where JupyterHub writes configurable-http-proxy's pid, in the state folder (the hub stops a proxy left behind).
PROXY_PID_FILE = "proxy.pid"
#: The spawner of each kind of hub (:data:`labkit.hub.plan.CLUSTERS`).
SPAWNERS = {"local": "labkit.hub.spawner.LabSpawner", "slurm": "labkit.hub.slurm.LabSlurmSpawner"}


def apply(c, plan: HubPlan) -> None:
    """Fill JupyterHub's config object ``c`` for ``plan``."""
    state = plan.state_dir
    c.JupyterHub.ip = plan.ip
    c.JupyterHub.port = plan.port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = True  # stopping the hub stops every student's server
    c.JupyterHub.cleanup_proxy = True
    c.JupyterHub.authenticator_class = "pam"
    c.PAMAuthenticator.open_sessions = False  # no systemd-logind or session modules needed
    c.Authenticator.allowed_users = set(plan.students)
    c.JupyterHub.spawner_class = SPAWNERS[plan.cluster]
    for spawner in SPAWNERS.values():
        c[spawner.rsplit(".", 1)[1]].plan_file = str(plan.plan_file)
    c.Spawner.http_timeout = 120  # a cold JupyterLab on a busy 2-core host takes a while
    c.Spawner.start_timeout = 120
    c.Spawner.poll_interval = plan.poll_s
    if plan.cluster == "slurm":  # servers on compute nodes reach the hub's API on an address of the cluster's network
        c.JupyterHub.hub_ip = plan.hub_ip
        c.LabSlurmSpawner.req_partition = plan.partition
    c.ConfigurableHTTPProxy.command = [str(plan.proxy)]
    c.ConfigurableHTTPProxy.pid_file = str(state / PROXY_PID_FILE)


def write(plan: HubPlan) -> Path:
    """Write the plan and a ``jupyterhub_config.py`` that applies it into the (private) state folder."""
    plan.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    plan.state_dir.chmod(0o700)
    plan.plan_file.write_text(plan.to_json())
    config = plan.state_dir / CONFIG_FILE
    config.write_text("# Written by `labkit hub start`; edit the plan with its options instead.\n"
                      "from labkit.hub import config, plan\n"
                      f"config.apply(c, plan.HubPlan.load({str(plan.plan_file)!r}))  # noqa: F821\n")
    return config
