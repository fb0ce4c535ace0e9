"""A guest that says it is alive: one console line a second carrying its own uptime.

Watching these lines tells what libvirt's state word cannot prove alone:
that a paused guest really stops (no line arrives), and that a restored
guest is the *same* guest (its clock goes on from where it was saved,
where a fresh boot would start again near zero).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from labkit.errors import GuestTimeoutError, console_tail

if TYPE_CHECKING:
    from labkit.virt.domain import Domain

#: The word each heartbeat line starts with.
HEARTBEAT = "alive"
#: The guest's command: ``alive <seconds since its kernel started>`` every second, until the guest is ended.
COMMAND = f'while :; do read up _ </proc/uptime; echo "{HEARTBEAT} $up"; sleep 1; done'
_LINE = re.compile(rf"^{HEARTBEAT} (\d+(?:\.\d+)?)\r?$", re.MULTILINE)


def uptimes(console: str) -> list[float]:
    """The guest's uptime at each heartbeat on ``console``, in order."""
    return [float(m.group(1)) for m in _LINE.finditer(console)]


def heartbeats(domain: Domain, seconds: float) -> int:
    """Heartbeat lines the guest printed on its console during the next ``seconds``."""
    before = len(uptimes(domain.console()))
    time.sleep(seconds)
    return len(uptimes(domain.console())) - before


def wait_for_heartbeats(domain: Domain, count: int, timeout: float = 30.0) -> list[float]:
    """Wait until the console holds ``count`` heartbeats in all; their uptimes (raises after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while len(seen := uptimes(domain.console())) < count:
        if time.monotonic() > deadline:
            raise GuestTimeoutError(f"{domain.name}: {len(seen)} of {count} heartbeats in {timeout:g} s. "
                                    f"Last console lines:\n{console_tail(domain.console())}",
                                    "is the guest paused or stopped? resume or start it; a slow host needs "
                                    "a longer timeout")
        time.sleep(0.1)
    return seen
