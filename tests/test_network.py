"""The tiny guest's NIC on QEMU's user-mode network: an address, a transfer to the host, and no way out.

The guest runs under real QEMU; the only addresses involved are slirp's
private 10.0.2.0/24 inside the QEMU process and the host's loopback.
"""

from __future__ import annotations

import asyncio

import pytest

from framework import solution
from labkit import images
from labkit.errors import InvalidOptionError
from labkit.exercises import network
from labkit.qemu import net


def test_bad_nic_or_port_is_one_clear_error() -> None:
    with pytest.raises(InvalidOptionError, match="nic='e1000'"):
        net.netdev_args(5000, "e1000")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="not a TCP port"):
        net.netdev_args(70000)
    with pytest.raises(InvalidOptionError, match="1 to 256 MiB"):
        net.transfer_command(0)


def test_the_restricted_network_only_leads_to_the_lab_endpoint() -> None:
    """The guest reaches the one forward (the host sees every byte, from QEMU) and not the host's loopback."""
    image = images.tiny_guest(fetch=False, progress=False)
    run = asyncio.run(net.measure_transfer(image, "virtio", 1))
    assert run.guest_address == "10.0.2.15"
    assert run.host_received == 2**20
    assert run.sender.split()[0].endswith("qemu-system-x86_64")
    assert run.forbidden_reached is False


def test_a_closed_listener_holds_no_socket() -> None:
    with net.Listener() as listener:
        sock = listener.sock
        assert sock.fileno() >= 0
    assert sock.fileno() == -1


def test_the_forward_exercise_fails_on_the_template_and_passes_the_reference_rule() -> None:
    """One boot: the reference rule (this learner's guest port to the listener) brings the guest's token home."""
    image = images.tiny_guest(fetch=False, progress=False)
    with net.Listener() as second:
        assert not network.net_forward(None, second, image).solved  # the template
        assert "without commas" in network.net_forward("tcp:a:1-tcp:b:2,restrict=off", second, image).message
        verdict = network.net_forward(solution("net-forward", second=second)["my_forward"], second, image)
        assert verdict.solved, verdict
        assert second.connections == 1 and second.senders[0].split()[0].endswith("qemu-system-x86_64")


def test_the_probe_exercise_believes_the_hosts_listeners() -> None:
    """Two boots: the reference probe tells the forwarded endpoint from the host's loopback; one that always
    says "unreachable" is caught by the endpoint's listener, which saw the connection."""
    image = images.tiny_guest(fetch=False, progress=False)
    assert not network.net_probe(None, image).solved  # the template
    verdict = network.net_probe(solution("net-probe")["my_probe"], image)
    assert verdict.solved, verdict
    blind = network.net_probe("echo unreachable", image)
    assert not blind.solved and "endpoint unreachable" in blind.message and "endpoint reachable" in blind.message
