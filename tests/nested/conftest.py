"""Tests that run *inside* the emulated AMD-V machine (L1), where KVM is hardware-style.

They are collected only when ``LABKIT_IN_L1=1``: ``tests/test_nested.py``
boots one L1 (``labkit nested run``) and runs this folder's pytest in it, so
one boot serves every hardware-path test.  On the host itself they would
test the wrong machine (PVM has no AMD-V), so the host's pytest leaves them
to that test rather than skipping them.
"""

from __future__ import annotations

import os

IN_L1 = os.environ.get("LABKIT_IN_L1") == "1"

collect_ignore_glob = [] if IN_L1 else ["test_*.py"]
