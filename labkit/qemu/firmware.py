"""A ``-bios`` image of our own, from assembly: the first instruction the vCPU runs is ours.

QEMU maps a 64 KiB ``-bios`` image at 0xF0000-0xFFFFF (and below 4 GiB) and
starts the vCPU at the reset vector F000:FFF0, in 16-bit real mode.  Notebook
02's idle guest (:mod:`labkit.lessons.hosted`) and notebook 04's payload
(:mod:`labkit.lessons.payload`) are such images: one way to build them, checked and
cached by content.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from labkit import asm, images, runtime
from labkit.errors import InvalidOptionError

#: Where QEMU maps a -bios image, and its size.
BIOS_ORIGIN = 0xF0000
BIOS_SIZE = 0x10000


def bios_image(source: str, kind: str) -> tuple[Path, asm.Program]:
    """``source`` assembled as a 64 KiB -bios image, in the user's cache as ``<kind>-<sha256>.bin``; the program.

    Assembly is cached per source (:func:`labkit.asm.assemble`); the file is written once per content.
    """
    program = asm.assemble(source, bits=16, origin=BIOS_ORIGIN)
    if len(program.image) != BIOS_SIZE:
        raise InvalidOptionError(f"the {kind} image is {len(program.image)} bytes, not 64 KiB",
                                 "keep the code below the reset vector at .org 0xFFF0, and end at .org 0x10000")
    path = runtime.cache_dir() / "payload" / f"{kind}-{hashlib.sha256(program.image).hexdigest()[:16]}.bin"
    if not path.is_file():
        images.publish(program.image, path)
    return path, program
