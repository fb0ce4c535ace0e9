"""What stops labkit's VMM from booting Linux, each with what to do about it."""

from __future__ import annotations

from labkit.errors import GuestError, InvalidOptionError, KvmUnavailableError


class NotAKernelError(InvalidOptionError):
    """The file is neither a kernel ELF (``vmlinux``) nor a ``bzImage``."""


class No64BitEntryError(InvalidOptionError):
    """A kernel, but not one this VMM can enter in 64-bit mode (32-bit, another architecture, an old bzImage)."""


class TooLittleMemoryError(InvalidOptionError):
    """The guest's RAM cannot hold the kernel, the initramfs and room to run."""


class NeedsHardwareKvmError(KvmUnavailableError):
    """This host's KVM cannot run a Linux kernel (no VT-x/AMD-V: guest ring 0 is emulated)."""


class LinuxBootError(GuestError):
    """The guest stopped, or ran out of time, before its /init reported (the evidence is in ``what``)."""
