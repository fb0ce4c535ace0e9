"""Whether students can see each other's processes: ``/proc`` mounted with ``hidepid``.

By default every user can list every process with its command line (``ps
aux``): a student's ``labkit boot --command …``, their notebook's kernel,
their QEMU.  Linux hides other users' processes when ``/proc`` is mounted
with ``hidepid=2`` (``invisible`` since Linux 5.8); root still sees all, so
the hub and ``labkit cleanup --all-users`` work either way.  Remounting
``/proc`` changes the whole host (every container sharing it too), so the
hub does not do it by itself: it reads the option and says when it is off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labkit.i18n import Phrase
from labkit.i18n import noop as N_

MOUNTS = Path("/proc/self/mounts")
#: The command that turns it on (until reboot; /etc/fstab's ``proc`` line keeps it).
FIX = Phrase(N_("sudo mount -o remount,hidepid=2 /proc (and add hidepid=2 to /proc's line in /etc/fstab)"))


@dataclass(frozen=True)
class ProcessPrivacy:
    """``hidden``: True (others' processes hidden), False (visible to all), None (could not tell)."""

    hidden: bool | None
    detail: str


def process_privacy(mounts: Path = MOUNTS) -> ProcessPrivacy:
    """Read the ``hidepid`` option of the ``proc`` mount at ``/proc``."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError as exc:
        return ProcessPrivacy(None, Phrase(N_("cannot read {path} ({error}): unknown whether students see each "
                                              "other's processes"), path=mounts, error=exc.strerror))
    for line in reversed(lines):  # the last mount on /proc is the one in effect
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "/proc" and fields[2] == "proc":
            options = dict(opt.partition("=")[::2] for opt in fields[3].split(","))
            value = options.get("hidepid", "0")
            if value in ("2", "invisible"):
                return ProcessPrivacy(True, Phrase(N_("/proc is mounted with hidepid={value}: students see only "
                                                      "their own processes"), value=value))
            return ProcessPrivacy(False, Phrase(N_("/proc is mounted with hidepid={value}: every student sees every "
                                                   "process and its command line (ps aux)"), value=value))
    return ProcessPrivacy(None, Phrase(N_("no proc mount on /proc in {path}: unknown whether students see each "
                                          "other's processes"), path=mounts))
