"""Another host, as far as a notebook can tell: nbval runs every notebook's kernel on it (``conftest.py``).

The committed notebooks were executed on some machine of the CI kind; nbval compares their outputs with a
fresh run.  Machines of that kind differ in kernel build, and a learner's differs in everything, so an output
nbval compares must never hold a host fact.  Run on the very machine that executed a notebook, such an output
would still match, and the mistake would surface only on the next machine.  So, as root, each kernel nbval
starts runs in its own mount and UTS namespaces where the facts a notebook reads are another host's:

- the kernel release and version (``/proc/sys/kernel/osrelease``, ``/proc/version``),
- the host name,
- the CPU model, and the number of CPUs: four (``/proc/cpuinfo`` lists CPU 0, with its flags, four times;
  ``/sys/devices/system/cpu/online`` says 0-3) — more than these machines have, as most learners' laptops do
  (fewer than the host has would also change what may run: a guest gets no more vCPUs than the host has CPUs),
- the memory (``MemTotal`` in ``/proc/meminfo``).

Every other file is this host's, so the KVM verdict, QEMU and libvirt behave as they do here.  What the
kernel's ``uname`` system call returns is not faked (no mount can reach it): ``tests/test_host_facts.py``
checks stored outputs for this host's ``uname -r`` and for release-shaped strings instead.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from labkit.jupyter import PrivateKernelManager

RELEASE = "6.99.0-labkit-fake"
HOSTNAME = "labkit-fake-host"
CPU_MODEL = "Fake CPU 9000 @ 1.00GHz"
CPUS = 4
MEM_TOTAL_KB = 3 * 1024 * 1024 + 12345  # a little over 3 GiB: no machine of the CI kind has it

#: (file under the fake dir, the path it is bind-mounted over)
MOUNTS = (("osrelease", "/proc/sys/kernel/osrelease"), ("version", "/proc/version"), ("cpuinfo", "/proc/cpuinfo"),
          ("meminfo", "/proc/meminfo"), ("online", "/sys/devices/system/cpu/online"))


def available() -> str | None:
    """Why kernels cannot run on the fake host here (None: they can): it takes root and ``unshare``."""
    if os.geteuid() != 0:
        return "faking host facts needs root (mount namespaces): nbval's kernels run on this host's facts"
    if not shutil.which("unshare"):
        return "unshare (util-linux) is missing"
    return None


def write_facts(folder: Path) -> None:
    """The fake files, made from this host's: only the facts above differ."""
    (folder / "osrelease").write_text(RELEASE + "\n")
    (folder / "version").write_text(f"Linux version {RELEASE} (fake@labkit) (gcc 99) #1 SMP\n")
    cpu0 = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    cpu0 = re.sub(r"(?m)^model name\s*:.*$", f"model name\t: {CPU_MODEL}", cpu0)
    cpu0 = re.sub(r"(?m)^(siblings|cpu cores)\s*:.*$", rf"\1\t: {CPUS}", cpu0)
    cpus = [re.sub(r"(?m)^(processor|core id|apicid|initial apicid)\s*:.*$", rf"\1\t: {n}", cpu0) for n in range(CPUS)]
    (folder / "cpuinfo").write_text("\n\n".join(cpus) + "\n\n")
    meminfo = re.sub(r"(?m)^MemTotal:\s*\d+ kB$", f"MemTotal:       {MEM_TOTAL_KB} kB",
                     Path("/proc/meminfo").read_text())
    (folder / "meminfo").write_text(meminfo)
    (folder / "online").write_text(f"0-{CPUS - 1}\n")


def wrap(argv: list[str], folder: Path) -> list[str]:
    """``argv`` run in new mount and UTS namespaces that show the fake files in ``folder``."""
    mounts = " && ".join(f"mount --bind {folder / name} {target}" for name, target in MOUNTS)
    script = f"{mounts} && hostname {HOSTNAME} && exec \"$@\""
    return ["unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", script, "fakehost",
            *argv]


class FakeHostKernelManager(PrivateKernelManager):
    """nbval's kernel manager: a private-IPC kernel (labkit.jupyter) on the fake host, where root can make one."""

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        argv = super().format_kernel_cmd(extra_arguments)
        folder = self.private_dir  # gone with the kernel; None where the kernel kept TCP
        if available() is not None or folder is None:
            return argv
        write_facts(folder)
        return wrap(argv, folder)
