"""labkit.jupyter: kernels over Unix sockets in a private dir, gone with the kernel; no TCP, no warning."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from labkit import runtime
from labkit.jupyter import PrivateKernelManager

TOP = Path(__file__).resolve().parent.parent


def test_a_kernel_talks_over_private_unix_sockets_and_leaves_nothing() -> None:
    km = PrivateKernelManager(kernel_name="python3")
    km.start_kernel()
    try:
        folder = Path(km.connection_file).parent
        assert folder.parent == runtime.run_dir() and folder.name.startswith("kernel-")
        assert stat.S_IMODE(folder.stat().st_mode) & 0o777 == 0o700  # (jupyter_client adds the sticky bit)
        info = json.loads(Path(km.connection_file).read_text())
        assert info["transport"] == "ipc" and info["ip"] == str(folder / "kernel-ipc")
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            reply = kc.execute_interactive("x = 6 * 7", timeout=120)
            assert reply["content"]["status"] == "ok"
        finally:
            kc.stop_channels()
        sockets = sorted(p.name for p in folder.iterdir() if stat.S_ISSOCK(p.lstat().st_mode))
        assert sockets == [f"kernel-ipc-{n}" for n in range(1, 6)], sockets
        # none of the five channels is a TCP port (ipykernel's own IOPub pipe for forked children stays on
        # loopback TCP: internal, it carries no message a client could send)
        ports = {info[f"{ch}_port"] for ch in ("shell", "iopub", "stdin", "control", "hb")}
        kernel = psutil.Process(km.provisioner.pid)
        assert not ports & {c.laddr.port for c in kernel.net_connections(kind="tcp")}
    finally:
        km.shutdown_kernel(now=True)
    assert not folder.exists()


def test_a_run_dir_too_deep_for_a_socket_path_keeps_tcp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Unix socket's path holds 107 bytes: under a deep run dir the kernel keeps TCP (and leaves no dir)."""
    deep = tmp_path / ("d" * 100)
    deep.mkdir(mode=0o700)
    monkeypatch.setattr(runtime, "run_dir", lambda: deep)
    km = PrivateKernelManager(kernel_name="python3")
    assert km.transport == "tcp" and km.connection_file == "" and list(deep.iterdir()) == []


def test_a_caller_may_still_choose_tcp() -> None:
    """Only the defaults change: a caller naming its transport gets it (and no private dir is made)."""
    km = PrivateKernelManager(kernel_name="python3", transport="tcp")
    assert km.transport == "tcp" and km.connection_file == ""


def test_nbconvert_as_kvmlab_notebooks_runs_it_prints_no_tcp_warning(tmp_path: Path) -> None:
    """`./kvmlab notebooks` executes with the async manager: no "running over TCP without encryption" on stderr."""
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "a1", "metadata": {}, "outputs": [],
                     "source": "print(6 * 7)"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "probe.ipynb"
    path.write_text(json.dumps(nb))
    proc = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                           "--inplace", "--ExecutePreprocessor.kernel_manager_class="
                           "labkit.jupyter.AsyncPrivateKernelManager", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "without encryption" not in proc.stderr and "WARNING" not in proc.stderr, proc.stderr
    assert json.loads(path.read_text())["cells"][0]["outputs"][0]["text"] == ["42\n"]
    assert "--ExecutePreprocessor.kernel_manager_class=labkit.jupyter.AsyncPrivateKernelManager" in \
        (TOP / "kvmlab").read_text()
