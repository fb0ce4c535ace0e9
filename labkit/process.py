"""What labkit asks of the kernel for its own processes: prctl(2) attributes, and machine code run natively.

One way for each chore, so that the constant, the error check and the release
are written once:

* :func:`die_with_parent` (``PR_SET_PDEATHSIG``): a QEMU labkit starts is
  killed with labkit's process, even by SIGKILL;
* :func:`become_subreaper` (``PR_SET_CHILD_SUBREAPER``): :mod:`labkit.subreaper`
  reaps the daemon's orphaned QEMUs at once;
* :func:`native_function`: a few bytes of x86-64 code copied into an
  executable anonymous mapping and called through ctypes (CPUID without
  ``/dev/cpu``, notebook 01's native loop), the mapping closed after.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def prctl(option: int, value: int, name: str) -> None:
    """``prctl(option, value)`` on this process; OSError (with ``name``) where the kernel refuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({name}): {os.strerror(err)}")


def die_with_parent() -> None:
    """In a child before exec (``preexec_fn``): SIGKILL it when labkit's process dies (even by SIGKILL).

    QEMU runs in its own session (so a Ctrl-C in a terminal reaches labkit,
    which then cleans up in order), so nothing else would stop it if the
    notebook kernel were killed outright.
    """
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")


def become_subreaper() -> None:
    """Make orphaned descendants this process's children (``prctl(PR_SET_CHILD_SUBREAPER)``)."""
    prctl(PR_SET_CHILD_SUBREAPER, 1, "PR_SET_CHILD_SUBREAPER")


@contextmanager
def native_function(code: bytes, restype: Any, *argtypes: Any) -> Iterator[Callable[..., Any]]:
    """``code`` (x86-64, SysV calling convention) as a ctypes function, for the ``with`` block only.

    Raises OSError where the kernel forbids a writable and executable mapping
    (a W^X policy). No reference into the mapping outlives the block.
    """
    region = mmap.mmap(-1, max(mmap.PAGESIZE, len(code)), prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    try:
        region.write(code)
        address = ctypes.addressof(ctypes.c_char.from_buffer(region))
        function = ctypes.CFUNCTYPE(restype, *argtypes)(address)
        try:
            yield function
        finally:
            del function, address
    finally:
        region.close()
