"""A real JupyterHub for a classroom on one host: students log in with their accounts and get the lab.

``labkit hub start`` (``./kvmlab hub``) runs JupyterHub from the lab's venv
as root, with configurable-http-proxy from npm, PAM logins for local student
accounts and a spawner that gives each student a JupyterLab on their own
copy of the notebooks, the shared read-only venv and guest image cache, and
memory/CPU limits where the host's control groups allow.

- :mod:`.plan`: what the hub is (lab, students, limits, state folder)
- :mod:`.config`: JupyterHub's configuration from a plan
- :mod:`.accounts`: student accounts and their copy of the notebooks
- :mod:`.limits`: per-student control groups (cgroup v2, or v1)
- :mod:`.spawner`: the lab spawner (imports JupyterHub: the ``hub`` extra)
- :mod:`.server`: the JupyterHub process, started and stopped cleanly
- :mod:`.serve`: `labkit hub start` after its options: accounts, image, the hub until stopped
"""

from __future__ import annotations

from labkit.hub.limits import Limits
from labkit.hub.plan import HubPlan

__all__ = ["HubPlan", "Limits"]
