"""`labkit doctor` notebook by notebook, on recorded hosts and as a real unprivileged student on this host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import students
from conftest import HOSTS
from labkit import doctor, host

ROOT = host.User(0, frozenset({0}))
STUDENT = host.User(1000, frozenset({1000}))


def _notebooks(name: str, user: host.User, failed: list[doctor.Check] = ()) -> dict[str, doctor.Check]:
    report = host.inspect(HOSTS / name, user=user)
    return {c.name: c for c in doctor.check_notebooks(report, list(failed))}


@pytest.mark.parametrize("name, user, nb03", [
    ("intel-vtx-baremetal", ROOT, "ok"),
    ("intel-vtx-baremetal", host.User(1001, frozenset({1001, 108})), "ok"),  # in the kvm group
    ("intel-vtx-baremetal", STUDENT, "warn"),  # not in it
    ("pvm-nested", ROOT, "ok"),
    ("pvm-nested", STUDENT, "warn"),  # root:root 0600, no kvm group: the case of these machines
    ("no-dev-kvm", ROOT, "warn"),
    ("rpi4-arm64", ROOT, "warn"),
])
def test_notebook_03_per_host_and_user(name: str, user: host.User, nb03: str) -> None:
    checks = _notebooks(name, user)
    assert checks["notebook 03 KVM"].status == nb03
    assert all(checks[f"notebook {nb}"].status == "ok" for nb in ("01 kernel", "02 hypervisor types", "04 QEMU",
                                                                   "05 libvirt"))
    summary = doctor.summary(list(checks.values()))
    assert (summary == "ready: the lab can run") is (nb03 == "ok")
    if nb03 == "warn":
        assert summary.startswith("PARTLY READY") and "03 KVM" in summary
        assert checks["notebook 03 KVM"].fix  # and it says what to do
    else:
        assert not checks["notebook 03 KVM"].fix


def test_a_student_without_access_is_told_why_and_how() -> None:
    check = _notebooks("pvm-nested", STUDENT)["notebook 03 KVM"]
    assert "recorded run" in check.detail and "you may not open /dev/kvm (mode 0600, root:root)" in check.detail
    assert "groupadd --system kvm" in check.fix  # no kvm group is known there: making one is part of the fix


def test_a_missing_program_fails_the_notebooks_that_need_it() -> None:
    qemu = doctor.Check("qemu-system-x86_64", "fail", "not installed (needed by 04 QEMU, 05 libvirt)", "apt")
    checks = _notebooks("intel-vtx-baremetal", ROOT, [qemu])
    assert checks["notebook 04 QEMU"].status == checks["notebook 05 libvirt"].status == "fail"
    assert checks["notebook 03 KVM"].status == "ok"
    assert doctor.summary([qemu, *checks.values()]) == "NOT READY: fix the FAIL lines above"


def test_cpu_check_reports_the_vt_state() -> None:
    check = doctor.check_cpu(host.inspect(HOSTS / "atom-n270-netbook", user=ROOT))
    assert check.status == "warn" and "not in this CPU" in check.detail and "firmware" not in check.fix


def test_students_check_creates_the_group_only_where_missing() -> None:
    report = host.inspect(HOSTS / "pvm-nested", user=ROOT)
    fix = doctor.check_students(report).fix
    assert "usermod -aG kvm NAME" in fix and "groupadd" in fix


# ----------------------------------------------------------------- a real student on this host

needs_student = pytest.mark.skipif(students.skip_unless_root() is not None, reason=students.skip_unless_root() or "")
needs_private_kvm = pytest.mark.skipif(
    not Path("/dev/kvm").exists() or bool(os.stat("/dev/kvm").st_mode & 0o006),
    reason="needs a /dev/kvm that other users may not open (these machines: root:root 0600)")


@needs_student
@needs_private_kvm
def test_doctor_as_a_student_is_not_ready_for_notebook_03() -> None:
    with students.exclusive(), students.student("labkit-stu1") as stu:
        proc = stu.labkit("doctor", "--json", timeout=120)
    data = json.loads(proc.stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["notebook 03 KVM"]["status"] == "warn"
    assert "you may not open /dev/kvm" in checks["notebook 03 KVM"]["detail"]
    assert data["summary"].startswith("PARTLY READY") and data["limited_notebooks"] == ["notebook 03 KVM"]
    assert proc.returncode == (0 if data["ready"] else 1)


NOTEBOOK_UNTIL_THE_GATE = """
import json, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
nb = nbformat.read("notebooks/03_kvm.ipynb", as_version=4)
for cell in nb.cells:  # drop the committed outputs: only what runs now counts
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
try:
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": "notebooks"}}).execute()
except CellExecutionError:
    pass
print(json.dumps([{"id": c.get("id"), "source": c.source, "outputs": c.get("outputs", []),
                   "ran": c.get("execution_count") is not None} for c in nb.cells if c.cell_type == "code"]))
"""


@needs_student
@needs_private_kvm
def test_notebook_03_as_a_student_ends_with_one_explanation() -> None:
    """The student runs notebook 03: it stops before its first ioctl, with no traceback and a labelled recorded run."""
    with students.exclusive(), students.student("labkit-stu1") as stu:
        proc = stu.python(NOTEBOOK_UNTIL_THE_GATE)
        out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    cells = json.loads(out)
    gate = next(i for i, c in enumerate(cells) if "host.require_raw_kvm(report)" in c["source"])
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert len(errors) == 1 and errors[0] in cells[gate]["outputs"]
    shown = "\n".join(errors[0]["traceback"])
    assert shown.startswith("Notebook 03 stops here: you may not open /dev/kvm")
    assert "RECORDED RUN, FOR REFERENCE ONLY" in shown and "fix: " in shown
    assert "Traceback" not in shown and "AccessDeniedError" not in json.dumps(cells)
    assert all(c["ran"] for c in cells[:gate]) and not any(c["ran"] for c in cells[gate + 1:])


#: /dev as on a host without KVM: a fresh tmpfs with only the nodes a Jupyter kernel needs.
WITHOUT_DEV_KVM = """mount -t tmpfs -o mode=755 none /dev && mkdir /dev/shm /dev/pts &&
for n in null:1:3 zero:1:5 random:1:8 urandom:1:9; do IFS=: read -r name major minor <<< "$n";
  mknod -m 666 /dev/$name c $major $minor; done && exec "$@" """


@needs_student  # root, for a private mount namespace
def test_notebook_03_without_dev_kvm_stops_before_its_claims() -> None:
    """On a host with no /dev/kvm, 03 stops at its first gate (not on a failed claim telling you to report it)."""
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", WITHOUT_DEV_KVM,
                           "bash", sys.executable, "-c", NOTEBOOK_UNTIL_THE_GATE],
                          capture_output=True, text=True, timeout=240, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    cells = json.loads(proc.stdout)
    gate = next(i for i, c in enumerate(cells) if "host.require_kvm(report)" in c["source"])
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert len(errors) == 1 and errors[0] in cells[gate]["outputs"]
    shown = "\n".join(errors[0]["traceback"])
    assert shown.startswith("Notebook 03 stops here: this host has no KVM") and "/dev/kvm does not exist" in shown
    assert "RECORDED RUN, FOR REFERENCE ONLY" in shown and "Traceback" not in shown
    assert all(c["ran"] for c in cells[:gate]) and not any(c["ran"] for c in cells[gate + 1:])
