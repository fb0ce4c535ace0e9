"""Kubernetes on paper, checked: `labkit hub k8s-values` writes values whose student pod the Kubernetes schemas accept.

No cluster is run (none on these machines): the values are read back as
YAML, the pod KubeSpawner would make from each profile is validated with
``kubernetes-validate`` (the API's OpenAPI schemas, shipped in the package:
no network) in strict mode, and the quantities follow Kubernetes' grammar.
The chart's own values schema is not available offline (it ships inside
the Helm chart, on no registry the lab installs from): not checked.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from labkit.doctor import SEAT_PARTS_MIB
from labkit.hub import k8s

#: Kubernetes' quantity grammar (a number, then a binary or decimal suffix), as the API server parses it.
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")


def written(tmp_path: Path, *options: str) -> dict:
    out = tmp_path / "values.yaml"
    done = subprocess.run([sys.executable, "-m", "labkit", "hub", "k8s-values", "--tag", "2026", "--out", str(out),
                           *options], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(out.read_text())


@pytest.mark.parametrize("plugin", sorted(k8s.KVM_PLUGINS))
def test_each_profiles_pod_is_a_valid_kubernetes_pod(tmp_path: Path, plugin: str) -> None:
    values = written(tmp_path, "--kvm-plugin", plugin)
    profiles = values["singleuser"]["profileList"]
    assert len(profiles) == 4 and sum(bool(p.get("default")) for p in profiles) == 1
    version = kubernetes_validate.latest_version()
    for index in range(len(profiles)):
        pod = k8s.pod(values, index)
        kubernetes_validate.validate(pod, version, strict=True)  # raises ValidationError
        resources = pod["spec"]["containers"][0]["resources"]
        for quantity in [*resources["limits"].values(), *resources["requests"].values()]:
            assert QUANTITY.match(quantity), quantity
    kvm = [p for p in profiles if k8s.KVM_PLUGINS[plugin] in p["kubespawner_override"].get("extra_resource_limits",
                                                                                          {})]
    assert len(kvm) == 2  # English and Korean, each with and without /dev/kvm


def test_a_broken_pod_is_refused_so_the_check_can_fail(tmp_path: Path) -> None:
    pod = k8s.pod(written(tmp_path), 0)
    pod["spec"]["containers"][0]["resourcez"] = pod["spec"]["containers"][0].pop("resources")
    with pytest.raises(kubernetes_validate.ValidationError, match="resourcez"):
        kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)


def test_the_limits_come_from_the_seat_sizing_and_the_korean_edition_opens_in_korean(tmp_path: Path) -> None:
    values = written(tmp_path)
    seat = sum(SEAT_PARTS_MIB.values())
    memory = values["singleuser"]["memory"]
    assert int(memory["guarantee"].removesuffix("Mi")) >= seat
    assert int(memory["limit"].removesuffix("Mi")) >= k8s.LIMIT_FACTOR * seat
    korean = [p["kubespawner_override"] for p in values["singleuser"]["profileList"] if "한국어" in p["display_name"]]
    assert korean and all(o["environment"] == {"LABKIT_LANG": "ko"} and o["default_url"].endswith("/ko")
                          for o in korean)
    # every notebook the values point at exists in the repository, in both editions
    top = Path(__file__).resolve().parent.parent
    assert list((top / "notebooks").glob("[0-9]*.ipynb")) and list((top / "notebooks/ko").glob("[0-9]*.ipynb"))
