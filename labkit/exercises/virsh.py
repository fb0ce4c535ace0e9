"""Notebook 05's second exercise: pause your guest with ``virsh``, from a shell line, not from Python.

The checker does not trust the state word alone: the guest prints a
heartbeat line every second on its console, and the checker measures that
none arrives while it watches, then resumes the guest so it stays the
learner's to end.  (CPU time would not tell: an idle guest's vCPUs sit in
``hlt`` and get almost none even while it runs.)
"""

from __future__ import annotations

from labkit import virt
from labkit.errors import LabkitError
from labkit.exercises import Feedback, exercise
from labkit.i18n import _

#: How long the checker watches the console: more than two heartbeats of a running guest.
WATCH_S = 2.5


def _hints() -> tuple[str, ...]:
    return (_("virsh names its commands after what they do to a domain; `virsh help domain` lists them"),
            _("section 6 paused a guest from Python: the virsh command has the same name as that method"))


@exercise("virsh-pause")
def paused_with_virsh(domain: object) -> Feedback:
    """Is ``domain`` paused — no heartbeat for :data:`WATCH_S` s, state 'paused' — after the learner's ``!virsh``?"""
    if not isinstance(domain, virt.Domain):
        return Feedback(False, _("pass your guest, keeper (got a {type})").format(type=type(domain).__name__),
                        (_("run section 9 first: it defines keeper"),))
    try:
        beats = virt.heartbeat.heartbeats(domain, WATCH_S)
        state = domain.state
    except LabkitError as exc:
        return Feedback(False, _("keeper cannot be read: {error}").format(error=exc.what),
                        (_("press start on its dashboard (or keeper.start()), then pause it with virsh"),))
    if state != "paused" or beats:
        return Feedback(False, _("keeper is {state}: it printed {beats} heartbeat(s) in {seconds} s").format(
                            state=state, beats=beats, seconds=WATCH_S), _hints())
    domain.resume()
    return Feedback(True, _("keeper was paused: not one heartbeat in {seconds} s, its QEMU process kept; "
                            "the check resumed it (virsh resume): it is yours to end").format(seconds=WATCH_S))
