"""What several test modules share: running labkit as a learner would (a fresh process, in the checkout), and
libvirt's in-process mock driver with stand-in boot files (the virt unit tests and the dashboard's).

Tests never import one another; what two of them need lives here (and in ``conftest.py``, ``students.py``,
``fakehost.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import virt

TOP = Path(__file__).resolve().parent.parent


def labkit_nested(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
                  stdin: str | None = None) -> subprocess.CompletedProcess:
    """``labkit nested ARGS`` in the checkout, its output captured (``env`` added to this process's)."""
    return subprocess.run([sys.executable, "-m", "labkit", "nested", *args], capture_output=True, text=True,
                          cwd=TOP, env={**os.environ, **(env or {})}, timeout=timeout, input=stdin)


@pytest.fixture(name="conn")
def mock_connection() -> Iterator[virt.Connection]:
    """A connection to libvirt's test:///default: the logic of define/start/stop without a boot."""
    with virt.connect(virt.TEST_URI) as c:
        yield c


@pytest.fixture(name="files")
def stand_in_files(tmp_path: Path) -> tuple[Path, Path]:
    """Stand-ins for a kernel and initramfs: test:///default boots nothing, but labkit checks they exist."""
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.gz"
    kernel.write_bytes(b"\0" * 16)
    initrd.write_bytes(b"\0" * 16)
    return kernel, initrd


def spec(files: tuple[Path, Path], name: str = "unit", **kw) -> virt.DomainSpec:
    """A domain of the stand-in files."""
    return virt.DomainSpec(name, files[0], files[1], **kw)


def defined(conn: virt.Connection, name: str) -> bool:
    """Whether libvirt knows a domain of this name (asked of libvirt itself, not of labkit)."""
    return name in {d.name() for d in conn.raw.listAllDomains()}
