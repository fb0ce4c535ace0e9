"""libvirt's failures as labkit errors a learner can act on."""

from __future__ import annotations

import os

import libvirt

from labkit.errors import AccessDeniedError, InvalidOptionError, LabkitError
from labkit.i18n import Phrase
from labkit.i18n import noop as N_
from labkit.virt.uri import SESSION_URI, SYSTEM_URI, URI_ENV

_DUPLICATE_FIX = ("choose another name, or remove the old domain: its Domain's close() in Python, conn.cleanup() for "
                  "all your lab domains, or from a shell: labkit virt cleanup (virsh destroy/undefine NAME)")


class VirtError(LabkitError):
    """libvirt refused or failed an operation (its message is kept)."""


class DaemonUnreachableError(VirtError):
    """No libvirt daemon answers on the connection's URI."""


class VirtAccessDeniedError(AccessDeniedError):
    """The daemon answered, but this user may not use that connection."""


class DuplicateDomainError(InvalidOptionError):
    """A domain with this name already exists."""


class DomainXmlError(InvalidOptionError):
    """The domain XML is malformed or fails libvirt's schema."""


def _translate(exc: libvirt.libvirtError, uri: str, action: str) -> LabkitError:
    """A libvirt error as the labkit error a learner can act on."""
    code, msg = exc.get_error_code(), exc.get_error_message() or str(exc)
    if code in (libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_ERR_XML_DETAIL, libvirt.VIR_ERR_XML_INVALID_SCHEMA):
        return DomainXmlError(Phrase(N_("libvirt rejected the domain XML: {message}"), message=msg),
                              "compare with https://libvirt.org/formatdomain.html; `virt-xml-validate FILE "
                              "domain` reports the same problem without libvirt")
    if code == libvirt.VIR_ERR_DOM_EXIST or "already exists" in msg:
        return DuplicateDomainError(Phrase(N_("cannot {action}: {message}"), action=action, message=msg),
                                    _DUPLICATE_FIX)
    unreachable = "Failed to connect socket" in msg or "Connection refused" in msg or code == libvirt.VIR_ERR_NO_CONNECT
    # a normal user's qemu:///system needs polkit's consent (asked over D-Bus), which may be unavailable
    polkit = action == "connect" and uri == SYSTEM_URI and os.geteuid() != 0 and not unreachable
    if polkit or "Permission denied" in msg or code in (
            libvirt.VIR_ERR_AUTH_FAILED, libvirt.VIR_ERR_AUTH_UNAVAILABLE, libvirt.VIR_ERR_AUTH_CANCELLED,
            libvirt.VIR_ERR_ACCESS_DENIED):
        fix = (f"{SYSTEM_URI} needs root: as a normal user use {SESSION_URI} (labkit's default: unset "
               f"{URI_ENV}), or run the lab as root" if action == "connect" else
               "QEMU runs as the user set in the daemon's qemu.conf and must be able to read the kernel, "
               "initramfs and console paths the domain names: put them where that user can read them")
        return VirtAccessDeniedError(Phrase(N_("not allowed to {action} on {uri}: {message}"), action=action, uri=uri,
                                            message=msg), fix)
    if unreachable:
        fix = ("sudo .venv/bin/labkit virt up  (starts libvirtd; ./kvmlab test and notebook 05 do it "
               "themselves as root)" if uri == SYSTEM_URI else
               "libvirt starts the per-user daemon itself: check it is installed (./kvmlab setup) and read "
               "~/.cache/libvirt/libvirtd.log" if uri == SESSION_URI else
               f"start libvirtd on the host of {uri}")
        return DaemonUnreachableError(Phrase(N_("no libvirt daemon answers on {uri}: {message}"), uri=uri,
                                             message=msg), fix)
    return VirtError(Phrase(N_("cannot {action} on {uri}: {message}"), action=action, uri=uri, message=msg),
                     Phrase(N_("see the daemon's log (/var/log/libvirt/ for qemu:///system, ~/.cache/libvirt/ for "
                               "qemu:///session)")))


# --------------------------------------------------------------------------- connection
