"""Running ``tests/nested/`` inside the emulated AMD-V machine (L1), for ``tests/test_nested_inside_*.py``.

The hardware-KVM path is tested in two L1 boots, one per file, so that xdist starts both at once on their own
workers (``conftest.LONGEST_FIRST``): KVM itself (``test_kvm_path.py``, ``test_own_vmm.py``) and QEMU with
libvirt (``test_qemu_libvirt_path.py``).  Each L1 has one vCPU, so the two together take the 2 host cores for
a few minutes, and the suite's critical path is half of what one L1 running everything was.
"""

from __future__ import annotations

import os
import re
import sys

from framework import TOP, labkit_nested

#: Bounds of an inside run.  Per test inside L1 (pytest-timeout, signal method: the stuck test fails with its
#: traceback and the run goes on; faulthandler dumps every thread's stack shortly before, in case the test is
#: stuck in C where no signal handler runs): the slowest test (notebook 04) takes ~1.5 min alone, ~3 min loaded,
#: 3.5 min beside four workers (run 41: 208 s).
INSIDE_TEST_TIMEOUT_S = 420
#: One L1 run, from the host (labkit nested run --timeout): ~2.5 min alone, ~5 min on a loaded 2-core host
#: (run 41, four workers: 328 s).
INSIDE_RUN_TIMEOUT_S = 1200
#: L1's niceness as root: ahead of the suite's other tests (0), not of the host's own work (-10 and below).
L1_NICENESS = -5


def running_inside(stdout: str) -> str | None:
    """The inside test that was running when L1 was stopped: pytest -v prints a test's id when it starts and
    its outcome on the same line when it ends, so it is the last id with no outcome after it."""
    last = [line for line in stdout.splitlines() if line.startswith("tests/nested/")][-1:]
    if last and not re.search(r" (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", last[0]):
        return last[0].split()[0]
    return None


def run_in_l1(*paths: str) -> None:
    """Boot one L1 and run pytest on ``paths`` (under tests/nested) in it: every collected test must pass."""
    # One vCPU: twice, on a loaded host, a 2-vCPU L1 stopped making progress mid-run (no output, no timer
    # firing inside for many minutes while QEMU kept burning CPU: most likely a livelock between L1's vCPUs
    # around nested SVM); with one there is no cross-vCPU wait.
    # As root (CI), L1 runs at a higher priority than the tests beside it: it is the suite's critical path (one
    # TCG vCPU, one host thread doing most of the work), and the others fill the remaining time around it.
    proc = labkit_nested("run", "--vcpus", "1", "--times", "--timeout", str(INSIDE_RUN_TIMEOUT_S), "--",
                         # env: L1's job passes on only the lab's variables (labkit.nested.job.PASSED)
                         "env", "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1",
                         sys.executable, "-m", "pytest", *paths, "-o", "addopts=", "--confcutdir", "tests/nested",
                         "-p", "no:cacheprovider", "-p", "timeout", f"--timeout={INSIDE_TEST_TIMEOUT_S}",
                         "-o", f"faulthandler_timeout={INSIDE_TEST_TIMEOUT_S - 30}",
                         "-v", "--color=no", "-rfEs", "--durations=8",
                         # PYTHONPATH: labkit importable even while another test (./kvmlab lab runs setup)
                         # reinstalls the editable package for a moment.  Only the plugin and conftest the
                         # inside tests use (timeout; tests/nested/conftest.py): with the others (nbval, xdist,
                         # anyio, the main run's conftest.py files) pytest took 26-29 s to collect in L1, without
                         # them 5.8 s.  LABKIT_RESULTS as the main run sets it.
                         env={"LABKIT_IN_L1": "1", "PYTHONPATH": str(TOP), "LABKIT_RESULTS": "off"},
                         timeout=INSIDE_RUN_TIMEOUT_S + 60,
                         niceness=L1_NICENESS if os.geteuid() == 0 else 0)
    print(proc.stdout[-4000:], proc.stderr[-1500:])
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    stuck = running_inside(proc.stdout)
    assert proc.returncode == 0, (f"{'L1 stopped while running ' + stuck if stuck else summary}\n"
                                  f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    collected, passed = re.search(r"collected (\d+) items", proc.stdout), re.search(r"(\d+) passed", summary)
    assert collected and passed and passed.group(1) == collected.group(1), summary  # all of them: none skipped
