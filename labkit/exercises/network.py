"""Notebook 04b's network exercises: forward a second guest port to the host; write the guest's reachability probe.

Both checkers boot the tiny guest on QEMU's restricted user network
(:mod:`labkit.qemu.net`) and believe the host's listeners, not only what the
guest printed: a forward works when the host's listener received what the
guest sent through it, and a probe is right when its verdicts match what the
host's listeners saw.
"""

from __future__ import annotations

import re
import secrets
import time

from labkit import exercises, images
from labkit.errors import LabkitError
from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.qemu import net

#: The guest ports a learner may be asked to forward (10.0.2.100:PORT in the guest).
FORWARD_PORTS = (6000, 7070, 8080, 8443, 9000, 9999)


def forward_port() -> int:
    """This learner's guest port to forward."""
    return exercises.target("net-forward", FORWARD_PORTS)


@exercise("net-forward")
def net_forward(rule: object, listener: net.Listener, image: images.GuestImage) -> Feedback:
    """Boot the guest with ``rule`` as a second guest forward (restrict=on kept); does a token the guest sends to
    10.0.2.100:PORT reach ``listener`` on the host?"""
    address, port = net.ENDPOINT[0], forward_port()
    hints = (_("slirp's guestfwd turns a connection from the guest to an address and port of its network into "
               "QEMU's connection to a host address and port"),
             _("a rule reads tcp:GUEST_ADDRESS:GUEST_PORT-tcp:HOST_ADDRESS:HOST_PORT, like the lab's own in "
               "the QEMU options above"))
    if not isinstance(rule, str) or not rule:
        return Feedback(False, _("set my_forward to a guestfwd rule, as text"), hints)
    if "," in rule:
        return Feedback(False, _("one rule, without commas: the check adds restrict=on and the lab's own forward"),
                        hints)
    token = secrets.token_hex(8)
    with net.Listener() as lab:
        try:
            result = net.probe_on_network(image, f"nc -w 3 {address} {port} -e echo {token} >/dev/null 2>&1; "
                                          "echo LABKIT-FORWARD-SENT", net.netdev_args(lab.port, more_forwards=(rule,)))
        except LabkitError as exc:
            return Feedback(False, _("QEMU did not take your rule: {error}").format(error=exc.what.splitlines()[0]),
                            hints)
    for _wait in range(40):  # QEMU may still be handing the token to the listener
        if arrived := token.encode() in bytes(listener.head):
            break
        time.sleep(0.05)
    if arrived:
        return Feedback(True, _("the guest sent {token} to {address}:{port} and your listener on the host's "
                                "loopback received it, through QEMU").format(token=token, address=address, port=port))
    seen = "LABKIT-FORWARD-SENT" in (result.report.command_output or "")
    return Feedback(False, _("the guest sent {token} to {address}:{port}, but your listener received nothing "
                             "of it{ran}").format(token=token, address=address, port=port,
                                                 ran="" if seen else _(" (the guest's command did not finish)")),
                    hints)


#: What a probe prints.
VERDICTS = ("reachable", "unreachable")
#: What the host's listeners must see: the forwarded endpoint answers, the host's loopback does not.
EXPECTED = {"endpoint": "reachable", "host": "unreachable"}
_PROBE_LINE = re.compile(r"LABKIT-PROBE (\w+) (\S*)")


@exercise("net-probe")
def net_probe(probe: object, image: images.GuestImage) -> Feedback:
    """Run the learner's ``probe`` in the guest against the lab's endpoint (forwarded) and the host's loopback
    (``restrict=on``): right when it says reachable exactly where the host's listener saw a connection."""
    hints = (_("the probe gets ADDR and PORT; busybox nc opens a TCP connection, and its exit status says "
               "whether it got one"),
             _("busybox nc -e PROG runs PROG once connected and ends with it (a forwarded connection never "
               "closes by itself); nc -w SEC bounds the wait for the connection"))
    if not isinstance(probe, str) or not probe.strip():
        return Feedback(False, _("set my_probe to a shell command for the guest, as text"), hints)
    with net.Listener() as lab, net.Listener() as forbidden:
        targets = {"endpoint": net.ENDPOINT, "host": (net.SLIRP_HOST, forbidden.port)}
        command = "; ".join(f"echo \"LABKIT-PROBE {name} $(ADDR={address} PORT={port}; {probe})\""
                            for name, (address, port) in targets.items())
        try:
            result = net.probe_on_network(image, command, net.netdev_args(lab.port), timeout=60)
        except LabkitError as exc:
            return Feedback(False, _("the guest did not run your probe: {error}").format(
                error=exc.what.splitlines()[0]), hints)
        said = dict(_PROBE_LINE.findall(result.report.command_output or ""))
        truth = {"endpoint": "reachable" if lab.connections else "unreachable",
                 "host": "reachable" if forbidden.connections else "unreachable"}
    if any(said.get(name) not in VERDICTS for name in targets):
        return Feedback(False, _("your probe printed {said}: each run should print reachable or unreachable").format(
            said=", ".join(f"{name}: {said.get(name, '') or _('nothing')}" for name in targets)), hints)
    if truth != EXPECTED:
        return Feedback(False, _("the host's listeners saw {truth}, not what restrict=on and the lab's forward "
                                 "allow: run the check again").format(
            truth=", ".join(f"{n} {truth[n]}" for n in targets)))
    if said != truth:
        return Feedback(False, _("your probe said {said}; the host's listeners saw {truth}").format(
            said=", ".join(f"{n} {said[n]}" for n in targets), truth=", ".join(f"{n} {truth[n]}" for n in targets)),
                        hints)
    return Feedback(True, _("your probe said the lab's endpoint is reachable and the host's loopback is not, "
                            "as the host's listeners saw it"))
