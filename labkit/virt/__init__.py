"""libvirt: the management layer over QEMU, driven from Python.

Notebook 04 ran QEMU by hand: a command line, a process, a console.  libvirt
turns that into *managed* guests: a persistent XML definition, a stable API
(the same calls for QEMU, Xen, LXC, local or ``qemu+ssh://`` remote hosts),
lifecycle events, and statistics.  This module is the lab's thin layer over
libvirt-python:

* :func:`choose_uri` / :func:`connect` — which libvirt connection, and why
  (``qemu:///session`` for an unprivileged user, ``qemu:///system`` as root,
  with a daemon labkit starts itself where no init system does: see
  :mod:`labkit.libvirtd`);
* :class:`DomainSpec` → :func:`domain_xml` — a typed description rendered to
  domain XML with :mod:`xml.etree`, validated by libvirt's schema on define;
* :func:`choose_domain_type` — ``kvm`` or ``qemu`` (TCG) from what libvirt
  offers *and* what this host's CPU can really run;
* :class:`Domain` — define, start, wait for the guest's report line, stats,
  lifecycle events, suspend/resume, destroy, undefine: a context manager that
  always destroys and undefines what it created;
* :func:`qemu_command_line` — the QEMU command line libvirt generated.

Every domain labkit makes is named ``labkit-<user>-…`` and labkit never
touches a domain without that prefix.

The package, one job per module: :mod:`~labkit.virt.uri`,
:mod:`~labkit.virt.errors`, :mod:`~labkit.virt.capabilities`,
:mod:`~labkit.virt.spec`, :mod:`~labkit.virt.connection`,
:mod:`~labkit.virt.domain`, :mod:`~labkit.virt.cmdline` and
:mod:`~labkit.virt.stack`; their public names are all here, as ``virt.X``.
"""

from labkit.errors import GuestPanicError, GuestStoppedError, GuestTimeoutError, MissingKernelError
from labkit.virt import heartbeat
from labkit.virt.capabilities import (
    DomainCapabilities,
    DomainTypeChoice,
    GuestCapability,
    HostCapabilities,
    choose_domain_type,
    parse_capabilities,
)
from labkit.virt.cmdline import (
    OptionRow,
    compare_command_lines,
    option_groups,
    parse_qemu_log,
    qemu_log_path,
    qemu_name,
    qemu_pids,
)
from labkit.virt.connection import Connection, connect
from labkit.virt.domain import EVENTS, Domain, LifecycleEvent, event_list
from labkit.virt.errors import (
    DaemonUnreachableError,
    DomainXmlError,
    DuplicateDomainError,
    VirtAccessDeniedError,
    VirtError,
)
from labkit.virt.spec import DomainSpec, domain_xml
from labkit.virt.stack import kvm_stack
from labkit.virt.state import STATES, DomainStats
from labkit.virt.uri import SESSION_URI, SYSTEM_URI, TEST_URI, URI_ENV, UriChoice, UriParts, choose_uri, uri_parts

__all__ = [
    "EVENTS", "SESSION_URI", "STATES", "SYSTEM_URI", "TEST_URI", "URI_ENV", "Connection", "DaemonUnreachableError",
    "Domain", "DomainCapabilities", "DomainSpec", "DomainStats", "DomainTypeChoice", "DomainXmlError",
    "DuplicateDomainError", "GuestCapability", "GuestPanicError", "GuestStoppedError", "GuestTimeoutError",
    "HostCapabilities", "LifecycleEvent", "MissingKernelError", "OptionRow", "UriChoice", "UriParts",
    "VirtAccessDeniedError", "VirtError", "choose_domain_type", "choose_uri", "compare_command_lines", "connect",
    "domain_xml", "event_list", "kvm_stack", "option_groups", "parse_capabilities", "parse_qemu_log",
    "qemu_log_path", "qemu_name", "heartbeat", "qemu_pids", "uri_parts",
]
