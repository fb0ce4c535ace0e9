"""Run a command as a child subreaper that reaps every orphan below it at once: ``python -m labkit.subreaper CMD…``.

Why: ``libvirtd`` double-forks each QEMU, so a QEMU that exits is re-parented
to the nearest subreaper, else to PID 1.  Where PID 1 reaps late (on these
machines every ~2 s, measured) the dead QEMU stays a zombie, and libvirt,
which checks ``kill(pid, 0)`` every 200 ms until the process is gone, holds
the domain's lock that long: each guest's power-off reached labkit ~1.4 s
late (issue 17).  :func:`labkit.libvirtd.start` starts the daemon under this.

The command's exit status is printed as ``exit N`` on stdout, then stdout and
stderr are closed (so a caller reading them sees EOF) and the subreaper reaps
until no child is left: the daemon and every guest it started are gone.
"""

from __future__ import annotations

import os
import subprocess
import sys

from labkit.process import become_subreaper


def main(argv: list[str]) -> int:
    """Run ``argv``, say how it ended, then reap until no child is left; the command's status."""
    become_subreaper()
    status = subprocess.run(argv).returncode
    print(f"exit {status}", flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
