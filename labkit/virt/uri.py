"""libvirt connection URIs: which one the lab uses, and why; a URI taken apart."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from labkit import libvirtd
from labkit.errors import InvalidOptionError
from labkit.i18n import Phrase
from labkit.i18n import noop as N_

SESSION_URI = "qemu:///session"
SYSTEM_URI = libvirtd.SYSTEM_URI
TEST_URI = "test:///default"
#: Set this to use another connection (e.g. ``qemu+ssh://user@host/system``).
URI_ENV = "LABKIT_VIRT_URI"


@dataclass(frozen=True)
class UriChoice:
    """The libvirt URI labkit uses, and the sentence that says why."""

    uri: str
    reason: str


def choose_uri(euid: int | None = None, env: Mapping[str, str] | None = None) -> UriChoice:
    """``$LABKIT_VIRT_URI`` if set, ``qemu:///system`` for root, else ``qemu:///session``."""
    env = os.environ if env is None else env
    euid = os.geteuid() if euid is None else euid
    if env.get(URI_ENV):
        return UriChoice(env[URI_ENV], Phrase(N_("{variable} is set"), variable=URI_ENV))
    if euid == 0:
        return UriChoice(SYSTEM_URI, Phrase(N_("you are root: the system-wide daemon, which manages every root-owned "
                                               "guest on this host (and may use /dev/kvm)")))
    return UriChoice(SESSION_URI, Phrase(N_("you are not root: a private per-user daemon that libvirt starts for "
                                            "you; your guests run as you and other users cannot see them")))


@dataclass(frozen=True)
class UriParts:
    """A libvirt URI taken apart: ``driver[+transport]://[user@][host]/path``."""

    driver: str  # qemu, test, xen, lxc, ...
    transport: str  # '' (local unix socket), ssh, tls, tcp, unix, libssh, ...
    user: str
    host: str  # '' = this machine
    path: str  # /system (root's daemon), /session (per-user), /default (test driver)

    @property
    def remote(self) -> bool:
        return bool(self.host)


def uri_parts(uri: str) -> UriParts:
    """Split a libvirt connection URI (see https://libvirt.org/uri.html)."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme:
        raise InvalidOptionError(f"{uri!r} is not a libvirt URI",
                                 "write it as driver[+transport]://[user@][host]/path, e.g. qemu:///system or "
                                 "qemu+ssh://me@server/system")
    driver, _, transport = scheme.partition("+")
    authority, _, path = rest.partition("/")
    user, _, hostname = authority.rpartition("@")
    return UriParts(driver, transport, user, hostname, "/" + path.split("?")[0])
