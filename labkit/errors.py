"""One error hierarchy for the whole lab.

Every error labkit raises says *what* is wrong and *how to fix it*, because
the reader is usually a student in a notebook, not the author of the code.
The CLI turns any :class:`LabkitError` into one clear line and exit status 2.
"""

from __future__ import annotations


class LabkitError(Exception):
    """Base class: a problem with a sentence for the learner and a fix."""

    def __init__(self, what: str, fix: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.what} (fix: {self.fix})" if self.fix else self.what


class InvalidOptionError(LabkitError, ValueError):
    """A parameter is out of range or malformed (size, name, path, XML...)."""


class MissingToolError(LabkitError, FileNotFoundError):
    """A program or file the lab needs is not installed or not found."""


class AccessDeniedError(LabkitError, PermissionError):
    """The current user may not use a resource (e.g. ``/dev/kvm``)."""


class KvmUnavailableError(LabkitError):
    """``/dev/kvm`` is missing or unusable on this host."""
