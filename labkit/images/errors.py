"""What can go wrong with the tiny guest's image and its report."""

from __future__ import annotations

from labkit.errors import LabkitError


class ImageError(LabkitError):
    """The guest image cannot be found or built."""


class ReportNotFoundError(ImageError):
    """The console transcript holds no ``LABKIT-REPORT`` line."""
