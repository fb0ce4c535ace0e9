"""A network card for the tiny guest on a network that never leaves this machine.

QEMU's *user-mode networking* (``-netdev user``, the slirp library) puts
the guest on a private network (10.0.2.0/24) that exists only inside the
QEMU process: a DHCP server gives the guest 10.0.2.15, and the guest's
packets become ordinary socket calls of QEMU on the host.  With
``restrict=on`` the guest reaches neither the host nor anything beyond;
the one way out is a *guest forward* labkit opens: a TCP connection from the
guest to ``10.0.2.100:5000`` becomes QEMU's connection to a
:class:`Listener` on the host's loopback (127.0.0.1).  Nothing ever leaves
the machine.

The NIC is either **virtio-net** (paravirtual: rings in shared memory) or
**vmxnet3**, VMware's NIC, which QEMU *emulates* register by register (the
only NIC QEMU emulates whose driver the lab's cloud kernel carries).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Literal

import psutil

from labkit import images, runtime
from labkit.errors import InvalidOptionError
from labkit.images.modules import with_device
from labkit.qemu.accel import Accel
from labkit.qemu.boots import BootResult, boot, boot_blocking

Nic = Literal["virtio", "vmxnet3"]

#: Per NIC: QEMU's device and the guest modules its driver needs.
NICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "virtio": ("virtio-net-pci", ("virtio_net", "virtio_pci")),
    "vmxnet3": ("vmxnet3", ("vmxnet3",)),
}

#: Where the guest finds the lab's endpoint: slirp forwards it to the host's :class:`Listener`.
ENDPOINT = ("10.0.2.100", 5000)
#: The host as slirp shows it to the guest; with ``restrict=on`` nothing answers there.
SLIRP_HOST = "10.0.2.2"
#: How much of what arrives a :class:`Listener` keeps.
HEAD_BYTES = 4096


class Listener:
    """A TCP listener on the host's loopback that counts what arrives.  A context manager.

    Runs one thread that accepts connections one after another and reads
    each to its end, or until ``expect`` bytes came in all (then it closes
    the connection: busybox's ``nc`` in the guest ends only when its peer
    does); :attr:`received` and :attr:`connections` are what the host saw.
    Closed at interpreter exit if nobody closed it.
    """

    def __init__(self, expect: int | None = None) -> None:
        self.expect = expect
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port: int = self.sock.getsockname()[1]
        self.received = 0
        self.connections = 0
        self.senders: list[str] = []  # the command line of the host process at the other end of each connection
        self.head = bytearray()  # the first :data:`HEAD_BYTES` bytes that arrived (what was said, not just how much)
        self.first_byte_at: float | None = None
        self.last_byte_at: float | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._serve, name=f"labkit-listener-{self.port}", daemon=True)
        self._thread.start()
        self._token: int | None = runtime.release_at_exit(self.close)

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.senders.append(_process_at(peer))
            with conn:
                while data := conn.recv(65536):
                    now = time.monotonic()
                    self.first_byte_at = self.first_byte_at or now
                    self.last_byte_at = now
                    self.received += len(data)
                    self.head += data[:HEAD_BYTES - len(self.head)]
                    if self.expect is not None and self.received >= self.expect:
                        break

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self._thread.join(timeout=2)
        if self._token is not None:
            runtime.forget(self._token)
            self._token = None

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _process_at(peer: tuple[str, int]) -> str:
    """The command line of the local process whose TCP socket is ``peer`` ("" if the kernel does not say)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and tuple(conn.laddr) == peer and conn.pid:
            try:
                return " ".join(psutil.Process(conn.pid).cmdline())
            except psutil.Error:
                return ""
    return ""


def netdev_args(port: int, nic: Nic = "virtio", more_forwards: tuple[str, ...] = ()) -> tuple[str, ...]:
    """QEMU options: user networking, restricted, one guest forward to 127.0.0.1:``port`` (and
    ``more_forwards``, each a ``guestfwd=`` rule), and the NIC."""
    if nic not in NICS:
        raise InvalidOptionError(f"nic={nic!r}: one of {', '.join(NICS)}", "virtio (paravirtual) or vmxnet3 (emulated)")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidOptionError(f"port={port!r} is not a TCP port", "pass Listener().port")
    address, guest_port = ENDPOINT
    rules = "".join(f",guestfwd={rule}" for rule in (forward_rule(address, guest_port, port), *more_forwards))
    return ("-netdev", f"user,id=net0,restrict=on{rules}", "-device", f"{NICS[nic][0]},netdev=net0")


def forward_rule(address: str, guest_port: int, host_port: int) -> str:
    """A slirp guest forward: the guest's connections to ``address:guest_port`` go to 127.0.0.1:``host_port``."""
    return f"tcp:{address}:{guest_port}-tcp:127.0.0.1:{host_port}"


#: Configures eth0 from slirp's DHCP answer (busybox udhcpc calls it with $ip, $mask, $router).
_DHCP_SCRIPT = ('printf \'#!/bin/sh\\n[ "$1" = bound ] && ip addr add $ip/$mask dev $interface && '
                'echo "LABKIT-NET address $ip router $router" >/tmp/lease\\nexit 0\\n\' >/tmp/dhcp; '
                'chmod +x /tmp/dhcp; '
                "ip link set eth0 up; udhcpc -i eth0 -q -n -t 5 -T 1 -s /tmp/dhcp >/dev/null 2>&1; cat /tmp/lease")


def transfer_command(mib: int, forbidden_port: int | None = None) -> str:
    """Get an address by DHCP, send ``mib`` MiB to the lab's endpoint (timed by the guest), then try
    ``10.0.2.2:forbidden_port`` (the host's loopback, which ``restrict=on`` must keep the guest from)."""
    if isinstance(mib, bool) or not isinstance(mib, int) or not 1 <= mib <= 256:
        raise InvalidOptionError(f"mib={mib!r}: 1 to 256 MiB", "e.g. 16")
    address, port = ENDPOINT
    # busybox's nc ends only when its peer closes, which slirp's forward does not pass on: the guest notes
    # when dd has handed the last byte to nc, lets nc drain, and stops it.
    command = (f"{_DHCP_SCRIPT}; read a _ </proc/uptime; (dd if=/dev/zero bs=64k count={mib * 16} 2>/dev/null; "
               f"read b _ </proc/uptime; echo $b >/tmp/sent) | nc -w 5 {address} {port} & i=0; "
               "while [ ! -s /tmp/sent ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; sleep 1; kill $! "
               "2>/dev/null; read b </tmp/sent; echo \"LABKIT-NET sent $a $b\"")
    if forbidden_port is not None:
        command += (f"; if echo x | timeout 5 nc -w 3 {SLIRP_HOST} {forbidden_port}; then echo 'LABKIT-NET reached'; "
                    "else echo 'LABKIT-NET refused'; fi")
    return command


@dataclass(frozen=True)
class NetRun:
    """One guest's transfer to the host, as the guest and the host saw it."""

    nic: str
    mib: int
    guest_address: str | None  # what slirp's DHCP gave the guest
    guest_s: float  # the guest's clock around its send (10 ms steps)
    host_received: int  # bytes the host's listener read
    host_s: float | None  # the host's clock from the first byte to the last
    sender: str  # the command line of the host process that connected to the listener (QEMU's)
    forbidden_reached: bool | None  # did the guest get through to 10.0.2.2 (None: not tried)

    @property
    def mib_s(self) -> float:
        """Throughput as the host received it (the guest's clock where the host saw no span)."""
        return self.host_received / 2**20 / max(self.host_s or self.guest_s, 0.01)


def parse_net(result: BootResult, nic: str, mib: int, received: int, host_s: float | None = None,
              sender: str = "") -> NetRun:
    """The :class:`NetRun` of a guest that ran :func:`transfer_command`; an error if it printed nothing."""
    out = result.report.command_output or ""
    sent = re.search(r"LABKIT-NET sent ([\d.]+) ([\d.]+)", out)
    if sent is None:
        raise InvalidOptionError(f"the guest printed no transfer on its {nic} NIC. It said:\n{out[-600:]}",
                                 "is the NIC's driver in the guest kernel? (labkit.images.modules)")
    address = re.search(r"LABKIT-NET address (\S+)", out)
    reached = re.search(r"LABKIT-NET (reached|refused)", out)
    return NetRun(nic, mib, address.group(1) if address else None, float(sent.group(2)) - float(sent.group(1)),
                  received, host_s, sender, None if reached is None else reached.group(1) == "reached")


async def measure_transfer(image: images.GuestImage, nic: Nic = "virtio", mib: int = 16, *, try_host: bool = True,
                           accel: Accel = "auto", timeout: float = 120.0) -> NetRun:
    """Boot the guest with ``nic`` on a restricted user network; it sends ``mib`` MiB to a host listener.

    With ``try_host``, a second listener on the host's loopback waits for a
    connection the guest must not be able to make (``10.0.2.2``).
    """
    with Listener(expect=mib * 2**20) as lab, Listener() as forbidden, runtime.scratch("net-initrd") as folder:
        command = transfer_command(mib, forbidden.port if try_host else None)
        ready = with_device(image, NICS[nic][1], "-e /sys/class/net/eth0", command, folder)
        result = await boot(ready, accel=accel, machine="pc", timeout=timeout,
                            extra_args=netdev_args(lab.port, nic))
        for _ in range(40):  # QEMU may still be handing the last bytes to the listener
            if lab.received >= mib * 2**20:
                break
            time.sleep(0.05)
        span = lab.last_byte_at - lab.first_byte_at if lab.first_byte_at and lab.last_byte_at else None
        run = parse_net(result, nic, mib, lab.received, span, lab.senders[0] if lab.senders else "")
        if try_host and forbidden.connections:  # the host's own count outranks what the guest printed
            run = replace(run, forbidden_reached=True)
        return run


def probe_on_network(image: images.GuestImage, command: str, options: tuple[str, ...], nic: Nic = "virtio", *,
                     accel: Accel = "auto", timeout: float = 120.0) -> BootResult:
    """Boot the guest with the network ``options`` (:func:`netdev_args`); once it holds slirp's DHCP lease it
    runs ``command``.  Blocking (an exercise's checker calls it, also inside a notebook: :func:`boot_blocking`)."""
    with runtime.scratch("net-initrd") as folder:
        ready = with_device(image, NICS[nic][1], "-e /sys/class/net/eth0", f"{_DHCP_SCRIPT}; {command}", folder)
        return boot_blocking(ready, accel=accel, machine="pc", timeout=timeout, extra_args=options)
