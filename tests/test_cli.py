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
