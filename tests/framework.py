"""What several test modules share: running labkit as a learner would (a fresh process, in the checkout),
waiting on a condition with a bound, and libvirt's in-process mock driver with stand-in boot files (the virt
unit tests and the dashboard's).

Tests never import one another; what two of them need lives here (and in ``conftest.py``, ``students.py``,
``fakehost.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from labkit import virt

T = TypeVar("T")

TOP = Path(__file__).resolve().parent.parent


def labkit_nested(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
                  stdin: str | None = None, niceness: int = 0) -> subprocess.CompletedProcess:
    """``labkit nested ARGS`` in the checkout, its output captured (``env`` added to this process's).

    ``niceness``: added to the command's (and so L1's QEMU's) scheduling niceness; below 0 needs root."""
    return subprocess.run([sys.executable, "-m", "labkit", "nested", *args], capture_output=True, text=True,
                          cwd=TOP, env={**os.environ, **(env or {})}, timeout=timeout, input=stdin,
                          preexec_fn=(lambda: os.nice(niceness)) if niceness else None)


def wait_for(condition: Callable[[], T], timeout: float = 60.0, what: str | Callable[[], str] = "a condition",
             interval: float = 0.05) -> T:
    """``condition()``'s first true value, asked every ``interval`` s; the test fails after ``timeout`` s.

    Another process's progress (a QEMU that starts or ends, a server that answers) gives a test no event
    to wait on: it polls, and the bound turns a hang into a failure that names ``what`` was awaited (a
    callable builds the words at failure: a log's tail). ``condition`` may itself fail the test early.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"waited {timeout:g} s for {what() if callable(what) else what}")
        time.sleep(interval)


def process_ended(pid: int) -> bool:
    """Whether process ``pid`` is gone or a zombie (ended, not yet reaped by its parent)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


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


def solution(name: str, **notebook: object) -> dict:
    """The names ``solutions/NAME.py`` sets, run with the notebook's names it uses (``notebook``)."""
    namespace = dict(notebook)
    exec((TOP / "solutions" / f"{name}.py").read_text(), namespace)  # our own reference files
    return namespace
