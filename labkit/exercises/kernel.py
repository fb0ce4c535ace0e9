"""Notebook 01's exercise: predict the page faults of a first touch."""

from __future__ import annotations

import mmap

from labkit.exercises import Feedback


def page_faults(prediction: int | None, mib: int) -> Feedback:
    """How many page faults does the first touch of ``mib`` MiB cost?"""
    answer = (mib << 20) // mmap.PAGESIZE
    if prediction == answer:
        return Feedback(True, f"{mib} MiB / {mmap.PAGESIZE} B per page = {answer} first-touch faults")
    if prediction is None:
        return Feedback(False, "set my_prediction to a number",
                        "one fault per page, and mmap.PAGESIZE tells the page size")
    return Feedback(False, f"{prediction} is not it",
                    f"divide the bytes touched by the page size ({mmap.PAGESIZE} bytes), not by 1 MiB")
