"""Jupyter kernels as labkit starts them: their channels over Unix sockets in the user's private run dir.

A kernel on TCP listens on loopback ports that every user of a shared workshop host can connect to (only the
HMAC key in its connection file keeps the others out) and sends code and outputs in plain text; ipykernel
warns about it on every start ("Kernel is running over TCP without encryption").  ZeroMQ's IPC transport
puts the kernel's five channel sockets, and its connection file, in a 0700 scratch dir of
:func:`labkit.runtime.run_dir`: reachable by this user alone, and reclaimed by name (``kernel-<pid>-…``) if
the process that started the kernel is killed.

Everything labkit starts kernels with uses it: nbval (``conftest.py``), ``labkit run`` (papermill, via
``kernel_manager_class``) and ``./kvmlab notebooks`` (nbconvert).  JupyterLab's own server does not: it names
each kernel's sockets after its connection file in the Jupyter runtime dir (``kernel-<uuid>-ipc-N``), and under
a deep runtime dir that path passes the 107 bytes a Unix socket's path may have (seen: "Error Starting Kernel"
in the browser test) — here the dir is short and ours (``<run dir>/kernel-<pid>-<8>/kernel-ipc-N``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager, KernelManager

from labkit import runtime

#: The longest path a Unix socket may have (``sun_path`` is 108 bytes with its NUL).
SOCKET_PATH_MAX = 107


class _PrivateIpc:
    """The defaults both kernel managers below change: IPC, in a private scratch dir that goes with the kernel.

    A caller that passes ``transport``, ``ip`` or ``connection_file`` gets those instead.  jupyter_client removes
    the connection file on a full shutdown (not on a restart) and the sockets on both; the dir goes after both.
    """

    _private_dir: Path | None = None
    _shut_down = False

    def __init__(self, **kwargs: Any) -> None:
        if not {"transport", "ip", "connection_file"} & kwargs.keys():
            folder = runtime.scratch_dir("kernel")
            # the sockets are named after the connection file: <dir>/kernel-ipc-<port>; a Unix socket's path
            # has room for 107 bytes, and a run dir deep in a test's TMPDIR leaves too few: TCP there
            if len(os.fsencode(folder / "kernel-ipc-65535")) <= SOCKET_PATH_MAX:
                self._private_dir = folder
                kwargs.update(transport="ipc", connection_file=str(folder / "kernel.json"))
            else:
                shutil.rmtree(folder, ignore_errors=True)
        super().__init__(**kwargs)

    @property
    def private_dir(self) -> Path | None:
        """The kernel's private dir (its sockets and connection file), or None where it kept TCP."""
        return self._private_dir

    def cleanup_connection_file(self) -> None:
        super().cleanup_connection_file()  # type: ignore[misc]
        self._shut_down = True

    def cleanup_ipc_files(self) -> None:
        super().cleanup_ipc_files()  # type: ignore[misc]
        if self._shut_down and self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None


class PrivateKernelManager(_PrivateIpc, KernelManager):
    """jupyter_client's blocking kernel manager (nbval, nbconvert), on private IPC."""


class AsyncPrivateKernelManager(_PrivateIpc, AsyncKernelManager):
    """jupyter_client's asyncio kernel manager (papermill's and nbclient's default kind), on private IPC."""
