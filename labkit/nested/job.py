"""The job L1 runs: the learner's command as the learner, where they are, with their environment.

L1's /nested-init runs as root; the job script (host ``/bin/sh``, in the
host's root seen through virtiofs) changes to the working directory, sets a
clean environment holding only what the lab needs from the caller's, and
drops to the caller's uid/gid with util-linux ``setpriv`` before it execs
the command.  Checking the command on the host first saves a 4-second boot
for a typo: both machines see the same files.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from labkit.errors import InvalidOptionError, MissingToolError

#: Variables passed into L1 by name; every ``LABKIT_*`` and ``LC_*`` one is passed too.
PASSED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TERM", "TZ", "VIRTUAL_ENV",
          "XDG_CACHE_HOME", "PYTHONPATH", "CI")


#: The session leader of an interactive shell in L1.  When a session leader exits, Linux hangs up its
#: controlling terminal, and a serial port's hangup discards what the UART has not sent yet: the shell's
#: last output (seen on a loaded host: only the echoed input came back).  So the leader is this wrapper,
#: which waits for the shell, then for the terminal's output to drain (stty sets a mode with TCSADRAIN;
#: SIGTTOU ignored once the shell is gone: the shell may leave another process group in the foreground), and
#: only then exits.  Bounded by busybox's timeout (/nested-init puts busybox there): coreutils' timeout would
#: move stty to a process group of its own and reset SIGTTOU, so stty stopped and the drain never ran.
DRAINING_SESSION_LEADER = ('"$@"; status=$?; trap "" TTOU; '
                           '/run/labkit-nested/busybox timeout 60 stty -ixon 2>/dev/null; exit $status')


def environment(env: Mapping[str, str]) -> dict[str, str]:
    """The part of ``env`` the command gets inside L1 (HOME matters: the lab's cache is under it)."""
    kept = {k: v for k, v in env.items() if k in PASSED or k.startswith(("LABKIT_", "LC_"))}
    kept.setdefault("HOME", pwd.getpwuid(os.getuid()).pw_dir)
    kept.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return kept


def resolve(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> str:
    """The program ``argv[0]`` names, as L1 will find it; a clear error when there is none."""
    if not argv:
        raise InvalidOptionError("no command to run inside the emulated AMD-V machine",
                                 "put it after --, e.g. labkit nested run -- .venv/bin/labkit host")
    program = argv[0]
    if "/" in program:
        path = cwd / program
        found = str(path) if path.is_file() and os.access(path, os.X_OK) else None
    else:
        found = shutil.which(program, path=env.get("PATH"))
    if found is None:
        raise MissingToolError(f"{program!r} is not a program L1 can run: not found (from {cwd}, "
                               f"PATH={env.get('PATH', '')})",
                               "give a path relative to this directory (e.g. .venv/bin/labkit) or an "
                               "installed command; L1 sees this host's files")
    return found


def script(argv: Sequence[str], env: Mapping[str, str], cwd: Path, *,
           uid: int, gid: int, terminal: tuple[int, int] | None = None) -> str:
    """The ``/bin/sh`` script that runs ``argv`` in L1 as ``uid``/``gid`` in ``cwd`` with ``env``.

    ``terminal`` (rows, columns) sizes L1's serial terminal for an interactive shell.
    """
    lines = ["set -e", f"cd {shlex.quote(str(cwd))}"]
    if terminal:
        lines.append(f"stty rows {terminal[0]} cols {terminal[1]}")
    command = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in sorted(env.items()))]
    if uid != 0 or gid != 0:
        if not Path("/usr/bin/setpriv").is_file():
            raise MissingToolError("setpriv is not installed: L1 needs it to run the command as you",
                                   "sudo apt-get install util-linux")
        try:
            pwd.getpwuid(uid)
            groups = "--init-groups"  # the user's supplementary groups, as at a login
        except KeyError:
            groups = "--clear-groups"  # a uid with no passwd entry has none
        command += ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={gid}", groups, "--"]
    if terminal:  # its own session with the serial line as controlling terminal: job control, Ctrl-C
        command = ["/usr/bin/setsid", "--ctty", "--wait", "/bin/sh", "-c", DRAINING_SESSION_LEADER, "sh", *command]
    lines.append("exec " + shlex.join([*command, *argv]))
    return "\n".join(lines) + "\n"
