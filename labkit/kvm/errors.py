"""What can go wrong with a KVM guest, each with what happened and what to do.

Two families: the host asked KVM something it refused (:class:`KvmIoctlError`,
:class:`GuestAddressError`), and the *guest* stopped in a way the VMM cannot
continue from (:class:`KvmGuestError` and its subclasses).  A guest error carries
the vCPU's registers and the code at RIP, because that dump is where a learner
starts to understand what their guest did.
"""

from __future__ import annotations

import errno
import os

from labkit.errors import GuestError, InvalidOptionError, LabkitError

_IOCTL_FIXES = {
    errno.EINVAL: "an argument is out of range for this ioctl (sizes and addresses must be page-aligned)",
    errno.EEXIST: "the range overlaps something the VM already has (another memory slot?)",
    errno.ENOMEM: "the host is out of memory: give the guest less RAM",
    errno.EFAULT: "KVM could not read this process's memory: a mapping was released too early",
    errno.EBADF: "the file descriptor is closed: use the object inside its `with` block",
    errno.ENXIO: "the kvm module is loaded but not usable: check `dmesg | grep -i kvm`",
}


class KvmIoctlError(LabkitError, OSError):
    """An ioctl on ``/dev/kvm``, a VM or a vCPU failed; says which one and why."""

    def __init__(self, name: str, err: int, context: str = "") -> None:
        what = f"{name} failed: {os.strerror(err)} (errno {errno.errorcode.get(err, err)})"
        LabkitError.__init__(self, what + (f" — {context}" if context else ""),
                             _IOCTL_FIXES.get(err, "see the KVM API documentation for this ioctl"))
        self.errno = err
        self.ioctl = name


class GuestAddressError(InvalidOptionError):
    """The host tried to read or write guest-physical memory that no memory slot backs."""


class KvmGuestError(GuestError):
    """A guest on labkit's own KVM VMM stopped in a way the VMM cannot continue from.

    A :class:`labkit.errors.GuestError` (one vocabulary for a guest's failures), named apart from it: this
    one carries the vCPU's state, not a console.

    ``dump`` is the register state and the code at RIP, formatted for people;
    ``registers``/``special`` hold the same values for programs.
    """

    def __init__(self, what: str, fix: str, *, exit=None, registers=None, special=None, dump: str = "") -> None:
        super().__init__(what + (f"\n{dump}" if dump else ""), fix)
        self.summary = what
        self.exit = exit
        self.registers = registers
        self.special = special
        self.dump = dump


class GuestShutdownError(KvmGuestError):
    """KVM_EXIT_SHUTDOWN: a triple fault (an exception while delivering a double fault)."""


class GuestInternalError(KvmGuestError):
    """KVM_EXIT_INTERNAL_ERROR: KVM could not handle what the guest did (often: emulation)."""


class GuestEntryFailedError(KvmGuestError):
    """KVM_EXIT_FAIL_ENTRY: the hardware refused to enter the guest with this vCPU state."""


class GuestBudgetExceededError(KvmGuestError):
    """The guest ran longer (time or exits) than its budget without halting."""


class UnhandledAccessError(KvmGuestError):
    """The guest touched a port or an address with no memory slot and no device behind it."""


class UnexpectedExitError(KvmGuestError):
    """KVM returned an exit reason this VMM does not handle."""
