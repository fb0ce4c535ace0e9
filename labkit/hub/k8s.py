"""Zero to JupyterHub values for the lab: KubeSpawner with the lab's image, /dev/kvm from a device plugin.

``labkit hub k8s-values`` writes these; nothing here talks to a cluster
(none is run on the lab's test machines: docs/instructor.md says which
parts were never run).  What they say, and why:

- **the image** is the repo2docker build of this repository
  (``environment.yml``, ``apt.txt``, ``postBuild``, ``start``) into
  :data:`REPO_DIR`: the lab's packages and the guest image baked in, so a
  pod fetches nothing at run time; the student's persistent volume is their
  home, where each start copies the notebooks they lack (their work stays);
- **memory and CPU** come from the seat sizing (``labkit doctor``'s per
  seat parts, measured by ``bench/seats.py``): the guarantee is one seat,
  which decides how many students the scheduler puts on a node; the limit
  is :data:`LIMIT_FACTOR` seats, room for a bigger guest, and the ceiling
  a runaway student hits; CPU is guaranteed a quarter core (a student is
  idle between boots) and limited to one (a TCG boot keeps one core busy);
- **/dev/kvm** is a resource a device plugin hands out: KubeVirt's
  ``devices.kubevirt.io/kvm`` (its ``virt-handler`` DaemonSet, the usual
  choice where KubeVirt runs anyway) or squat.ai's generic device plugin
  ``squat.ai/kvm`` (one small DaemonSet, no KubeVirt) — the KVM profile
  asks for one and lands only on nodes that have it; the TCG profile runs
  anywhere, slower, and the student's doctor says so.  A privileged pod
  or a hostPath of /dev/kvm would work too, but gives every student root
  on the node's devices: not offered;
- **the Korean edition** is a profile whose server opens the Korean
  notebooks (``notebooks/ko``) with ``LABKIT_LANG=ko``.
"""

from __future__ import annotations

import math
from typing import Any

#: The device plugins that give pods /dev/kvm: the resource name each one advertises.
KVM_PLUGINS = {"kubevirt": "devices.kubevirt.io/kvm", "generic": "squat.ai/kvm"}
#: The memory limit, in seats: above one seat for a bigger guest or a sweep, and the runaway's ceiling.
LIMIT_FACTOR = 3
CPU_GUARANTEE, CPU_LIMIT = 0.25, 1.0
#: Where the image holds the lab (``repo2docker --target-repo-dir``): outside the home, which the student's
#: persistent volume covers.
REPO_DIR = "/srv/kvm-lab"
#: The student's own copy of the notebooks in their home (as on the one-host hub: ``~/kvm-lab``).
LAB = "kvm-lab"
#: The editions a student chooses between: language, its name, the folder their JupyterLab opens.
EDITIONS = (("en", "English", f"/lab/tree/{LAB}"), ("ko", "한국어", f"/lab/tree/{LAB}/ko"))
#: Each start copies the notebooks the student does not have yet into their home (their work is kept).
COPY_NOTEBOOKS = (f"mkdir -p ~/{LAB}/ko && cp -n {REPO_DIR}/notebooks/[0-9]*.ipynb ~/{LAB}/ && "
                  f"cp -n {REPO_DIR}/notebooks/ko/[0-9]*.ipynb ~/{LAB}/ko/")


HEADER = ("# Zero to JupyterHub values for KVM Lab, written by `labkit hub k8s-values`.\n"
          "# Never run on a cluster by the lab's tests: the student pod they make is validated against the\n"
          "# Kubernetes schemas (tests/test_hub_k8s.py). Add your site's authenticator under hub.config.\n")


def mebibytes(mib: int) -> str:
    """A Kubernetes quantity in MiB (``512Mi``), rounded up to 64 MiB."""
    return f"{math.ceil(mib / 64) * 64}Mi"


def _profile(name: str, description: str, url: str, lang: str, kvm: str | None, default: bool) -> dict[str, Any]:
    override: dict[str, Any] = {"default_url": url, "environment": {"LABKIT_LANG": lang}}
    if kvm is not None:
        override["extra_resource_limits"] = {kvm: "1"}
        override["extra_resource_guarantees"] = {kvm: "1"}
    profile: dict[str, Any] = {"display_name": name, "description": description, "kubespawner_override": override}
    if default:
        profile["default"] = True
    return profile


def values(image: str, tag: str, seat_mib: int, kvm_plugin: str = "kubevirt") -> dict[str, Any]:
    """The chart's values (``helm upgrade --install … --values``) for the lab's image and a seat of ``seat_mib``."""
    kvm = KVM_PLUGINS[kvm_plugin]
    profiles = []
    for lang, edition, url in EDITIONS:
        profiles.append(_profile(f"KVM Lab ({edition}, KVM)", f"guests under KVM: needs a node with {kvm}", url,
                                 lang, kvm, default=lang == "en"))
        profiles.append(_profile(f"KVM Lab ({edition}, TCG)", "guests under QEMU's TCG emulator, on any node", url,
                                 lang, None, default=False))
    return {
        "singleuser": {
            "image": {"name": image, "tag": tag, "pullPolicy": "IfNotPresent"},
            "defaultUrl": EDITIONS[0][2],
            "lifecycleHooks": {"postStart": {"exec": {"command": ["sh", "-c", COPY_NOTEBOOKS]}}},
            "memory": {"guarantee": mebibytes(seat_mib), "limit": mebibytes(seat_mib * LIMIT_FACTOR)},
            "cpu": {"guarantee": CPU_GUARANTEE, "limit": CPU_LIMIT},
            "storage": {"type": "dynamic", "capacity": "2Gi"},
            "networkPolicy": {"enabled": True},
            "profileList": profiles,
        },
        "prePuller": {"hook": {"enabled": True}, "continuous": {"enabled": True}},
        "cull": {"enabled": True, "timeout": 3600},
    }


def pod(chart_values: dict[str, Any], profile: int) -> dict[str, Any]:
    """The student's pod as KubeSpawner makes it from ``chart_values`` and one profile (what a test can validate).

    Only the parts these values set: the image, the limits (with /dev/kvm's
    device resource), the environment.
    """
    user = chart_values["singleuser"]
    override = user["profileList"][profile]["kubespawner_override"]
    limits = {"memory": user["memory"]["limit"], "cpu": str(user["cpu"]["limit"]),
              **override.get("extra_resource_limits", {})}
    requests = {"memory": user["memory"]["guarantee"], "cpu": str(user["cpu"]["guarantee"]),
                **override.get("extra_resource_guarantees", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jupyter-student", "labels": {
                "component": "singleuser-server"}},
            "spec": {"containers": [{
                "name": "notebook", "image": f"{user['image']['name']}:{user['image']['tag']}",
                "imagePullPolicy": user["image"]["pullPolicy"],
                "args": ["jupyterhub-singleuser"], "ports": [{"containerPort": 8888, "name": "notebook-port"}],
                "env": [{"name": k, "value": v} for k, v in override["environment"].items()],
                "lifecycle": user["lifecycleHooks"],
                "resources": {"limits": limits, "requests": requests}}]}}
