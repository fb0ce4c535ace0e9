"""The error of the emulated AMD-V machine."""

from __future__ import annotations

from labkit.errors import LabkitError


class NestedError(LabkitError):
    """The emulated AMD-V machine (L1) cannot be set up, started, or did not run the command."""


class CannotRunHereError(NestedError):
    """This host cannot run L1 at all (architecture, memory, virtiofsd as this user): nothing was started."""
