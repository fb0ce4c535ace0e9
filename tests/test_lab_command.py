"""`./kvmlab lab` — the README's first command — really brings JupyterLab up on notebooks/."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

from framework import TOP, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kvmlab_lab_serves_the_notebooks(tmp_path: Path) -> None:
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [str(TOP / "kvmlab"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/api/contents?token={token}"

        def answered() -> dict | None:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    return json.load(resp)
            except OSError:  # not listening yet
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                return None
        listing = wait_for(answered, 90, "JupyterLab to answer", interval=0.5)
        names = {item["name"] for item in listing["content"]}
        assert {"01_kernel.ipynb", "02_hypervisor_types.ipynb"} <= names
        # 30 s: the first /lab page renders JupyterLab's template and settings, on a host the suite keeps busy
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=30) as resp:
            assert resp.status == 200 and b"JupyterLab" in resp.read()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
