"""`labkit` as a learner meets it: doctor, host, and how errors read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HOSTS
from labkit import cli, doctor, host
from labkit.errors import InvalidOptionError


def labkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True)


def test_doctor_json_on_this_host() -> None:
    proc = labkit("doctor", "--json")
    data = json.loads(proc.stdout)
    assert proc.returncode == (0 if data["ready"] else 1)
    checks = {c["name"]: c for c in data["checks"]}
    verdict = host.inspect().verdict
    assert checks["kvm"]["detail"].startswith(verdict.label)
    if verdict.kind == "nested":  # these machines: KVM present, nested, no VT-x/AMD-V
        assert checks["kvm"]["status"] == "warn" and "TCG" in checks["kvm"]["detail"]
        assert checks["platform"]["detail"].endswith("KVM guests here are nested")
    else:
        assert not checks["platform"]["detail"].endswith("KVM guests here are nested")


def test_doctor_text_report() -> None:
    proc = labkit("doctor")
    assert "[ok  ] kernel" in proc.stdout
    assert ("ready: the lab can run" in proc.stdout) is (proc.returncode == 0)


@pytest.mark.parametrize("name, status", [
    ("intel-vtx-baremetal", "ok"), ("pvm-nested", "warn"), ("no-dev-kvm", "warn")])
def test_doctor_kvm_check_per_host(name: str, status: str) -> None:
    report = host.inspect(HOSTS / name, user=host.User(0, frozenset({0})))
    assert doctor.check_kvm(report).status == status


def test_doctor_fails_without_qemu(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = doctor.shutil.which
    monkeypatch.setattr(doctor.shutil, "which",
                        lambda prog, path=None: None if prog == "qemu-system-x86_64" else real_which(prog, path=path))
    checks = doctor.check_programs()
    qemu = next(c for c in checks if c.name == "qemu-system-x86_64")
    assert qemu.status == "fail" and "apt-get install qemu-system-x86" in qemu.fix
    assert not doctor.can_run(checks)


def test_host_command_on_recorded_host() -> None:
    proc = labkit("host", "--root", str(HOSTS / "amd-svm-baremetal"))
    assert proc.returncode == 0
    assert "hardware virtualization: AMD-V" in proc.stdout
    assert "kvm       hardware KVM" in proc.stdout


def test_host_record_then_json(tmp_path: Path) -> None:
    assert labkit("host", "--record", str(tmp_path / "rec")).returncode == 0
    data = json.loads(labkit("host", "--root", str(tmp_path / "rec"), "--json").stdout)
    assert data["verdict"]["kind"] == host.inspect().verdict.kind


def test_errors_become_one_line_with_fix(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def boom(args):
        raise InvalidOptionError("memory must be at least 16 MiB, not 1", "pass --memory 128")
    monkeypatch.setattr("labkit.cli.doctor.run", boom)
    assert cli.main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert err == "labkit: error: memory must be at least 16 MiB, not 1\n  fix: pass --memory 128\n"


def test_a_command_with_a_missing_dependency_says_so(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    """Without libvirt-python, `labkit virt` explains itself and the other commands still run."""
    real_import = cli.importlib.import_module

    def import_module(name: str):
        if name == "labkit.cli.virt":  # what importing it raises where libvirt-python is missing
            raise ModuleNotFoundError("No module named 'libvirt'", name="libvirt")
        return real_import(name)

    monkeypatch.setattr(cli.importlib, "import_module", import_module)
    assert cli.main(["virt", "status"]) == 2
    assert "`labkit virt` needs the Python module 'libvirt'" in capsys.readouterr().err
    assert cli.main(["host", "--root", str(HOSTS / "no-dev-kvm")]) == 0


def test_a_command_imports_only_what_it_runs() -> None:
    """`labkit --help` lists every command without importing one; `labkit host` imports neither libvirt, QEMU's
    QMP, papermill nor jsonschema (which alone took 1.1 s): a learner's shell answers at once."""
    probe = ("import sys; from labkit import cli\n"
             "try:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in {'libvirt', 'qemu', 'papermill', "
             "'jsonschema', 'matplotlib'} or m.startswith('labkit.cli.')))")
    listed = subprocess.run([sys.executable, "-c", probe, "--help"], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert all(f"    {name} " in listed.stdout for name in cli.COMMANDS), listed.stdout
    assert listed.stdout.splitlines()[-1] == "[]"
    live = subprocess.run([sys.executable, "-c", probe, "host", "--json"], capture_output=True, text=True)
    assert live.returncode == 0, live.stderr
    assert live.stdout.splitlines()[-1] == "['labkit.cli.host']"


# ----------------------------------------------------------------- instructor checks


@pytest.mark.parametrize("name, says", [
    ("intel-vtx-baremetal", "members of the kvm group can open /dev/kvm"),
    ("pvm-nested", "only root can open /dev/kvm (mode 0600): students run TCG"),
    ("no-dev-kvm", "no /dev/kvm: everyone runs TCG"),
])
def test_students_check_per_host(name: str, says: str) -> None:
    """What a student account gets, judged from the host's /dev/kvm (here: recorded hosts)."""
    report = host.inspect(HOSTS / name, user=host.User(0, frozenset({0})))
    check = doctor.check_students(report)
    assert says in check.detail
    assert (check.fix is None) is (name == "no-dev-kvm")


def test_seat_estimate_arithmetic() -> None:
    seats = doctor.SeatEstimate({"a": 300, "b": 200}, available_mib=2600, cpus=4)
    assert (seats.per_seat_mib, seats.seats_by_memory, seats.simultaneous_boots) == (500, 5, 4)


def test_guest_image_check_without_a_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit import images

    monkeypatch.setattr(images, "cache_info", lambda: [])
    check = doctor.check_guest_image()
    assert check.status == "warn" and "labkit image build" in check.fix


def test_libvirt_check_for_a_student(monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit import virt

    as_student = virt.choose_uri(euid=1000, env={})
    monkeypatch.setattr(virt, "choose_uri", lambda: as_student)
    check = doctor.check_libvirt()
    assert check.status == "ok" and check.detail.startswith("qemu:///session: you are not root")


def test_doctor_json_has_the_seat_estimate() -> None:
    data = json.loads(labkit("doctor", "--json").stdout)
    seat = data["seat"]
    assert seat["per_seat_mib"] == sum(seat["parts_mib"].values()) > 0
    assert seat["seats_by_memory"] == seat["available_mib"] // seat["per_seat_mib"]
    assert data["kvm"] == host.inspect().verdict.kind and data["hostname"]
