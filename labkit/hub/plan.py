"""What a lab hub is: where the lab lives, who the students are, their limits, where the hub keeps state.

``labkit hub start`` writes the plan as JSON into the hub's state folder; the
generated ``jupyterhub_config.py`` and the spawner read it back, so the
JupyterHub process and the labkit command agree on one description.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labkit.hub.limits import Limits

#: Default state folder (database, cookie secret, config, logs): root's, mode 0700.
STATE_DIR = Path("/var/lib/labkit-hub")
PLAN_FILE = "plan.json"
#: Where students' servers run: ``local`` (this host, :mod:`.spawner`) or ``slurm`` (cluster jobs, :mod:`.slurm`).
CLUSTERS = ("local", "slurm")


@dataclass(frozen=True)
class HubPlan:
    lab_root: Path
    students: tuple[str, ...]
    state_dir: Path = STATE_DIR
    ip: str = ""
    port: int = 8000
    limits: Limits = field(default_factory=Limits)
    shared_cache: Path = Path("/var/cache/labkit")
    cluster: str = "local"
    #: The address students' servers reach the hub's API at (a compute node must reach it on a cluster).
    hub_ip: str = "127.0.0.1"
    #: Slurm: the partition for students' jobs ("" = the cluster's default) and slurm.conf ("" = Slurm's default).
    partition: str = ""
    slurm_conf: str = ""
    #: How often the hub asks whether each server still runs (JupyterHub's default, 30 s; a cluster's node may fail).
    poll_s: int = 30

    @property
    def venv(self) -> Path:
        """The lab's venv, shared read-only by every student's server and kernel."""
        return self.lab_root / ".venv"

    @property
    def notebooks(self) -> Path:
        return self.lab_root / "notebooks"

    @property
    def proxy(self) -> Path:
        """configurable-http-proxy, installed from npm into the venv by ``scripts/setup.sh --hub``."""
        return self.venv / "node/node_modules/.bin/configurable-http-proxy"

    @property
    def url(self) -> str:
        return f"http://{self.ip or '127.0.0.1'}:{self.port}"

    @property
    def plan_file(self) -> Path:
        return self.state_dir / PLAN_FILE

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}, indent=2)

    @classmethod
    def load(cls, path: str | Path) -> HubPlan:
        data = json.loads(Path(path).read_text())
        return cls(lab_root=Path(data["lab_root"]), students=tuple(data["students"]),
                   state_dir=Path(data["state_dir"]), ip=data["ip"], port=data["port"],
                   limits=Limits(**data["limits"]), shared_cache=Path(data["shared_cache"]),
                   cluster=data["cluster"], hub_ip=data["hub_ip"], partition=data["partition"],
                   slurm_conf=data["slurm_conf"], poll_s=data["poll_s"])
