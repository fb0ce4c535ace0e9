"""labkit.process: the one way to labkit's OS chores (prctl, machine code run natively) does them, or says why not."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from framework import process_ended, wait_for
from labkit import asm, process


def test_a_refused_prctl_is_an_os_error_that_names_the_option() -> None:
    with pytest.raises(OSError, match=r"prctl\(NO_SUCH_OPTION\): Invalid argument"):
        process.prctl(0x7FFF_FFFF, 0, "NO_SUCH_OPTION")


def test_a_child_dies_with_its_parent() -> None:
    """PR_SET_PDEATHSIG as QEMU gets it: the grandchild is killed when the process that started it exits."""
    parent = ("import subprocess, sys; from labkit import process\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
              " preexec_fn=process.die_with_parent)\n"
              "print(child.pid, flush=True)\n")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=60, check=True)
    pid = int(out.stdout)
    wait_for(lambda: process_ended(pid), 10, f"process {pid} to die with its parent")


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the machine code is x86-64")
def test_native_function_runs_machine_code_and_gives_its_result() -> None:
    code = asm.assemble(".intel_syntax noprefix\nlea rax, [rdi + rsi]\nret", bits=64).image
    with process.native_function(code, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64) as add:
        assert add(40, 2) == 42
