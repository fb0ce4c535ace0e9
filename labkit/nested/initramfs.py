"""L1's initramfs: the tiny guest's busybox archive plus ``/nested-init`` and the kernel modules.

Linux unpacks concatenated cpio archives in order, so the cached busybox
base of :mod:`labkit.images` is reused as is and a second archive adds
``/nested-init`` (``init.sh`` here; the kernel runs it with
``rdinit=/nested-init``) and ``/modules/*.ko``.  The result is cached by
content in the user's image cache, like the tiny guest's.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

from labkit import formats, images
from labkit.nested.modules import MODULES

INIT = Path(__file__).with_name("init.sh")
#: The kernel's ``rdinit=``: our init, beside (not instead of) the tiny guest's /init.
RDINIT = "/nested-init"


def build(modules: Path) -> Path:
    """The gzip'd initramfs of L1 for the modules in ``modules`` (cached by content)."""
    base = images.build_initramfs()
    init = INIT.read_bytes()
    digest = hashlib.sha256(base.name.encode() + init)
    for name in MODULES:
        digest.update((modules / f"{name}.ko").read_bytes())
    target = images.user_cache() / "initramfs" / f"nested-{digest.hexdigest()[:16]}.cpio.gz"
    if target.is_file():
        return target
    entries = [("modules", 0o040755, b""), ("host", 0o040755, b""), ("rw", 0o040755, b""),
               ("newroot", 0o040755, b""), (RDINIT.lstrip("/"), 0o100755, init)]
    entries += [(f"modules/{name}.ko", 0o100644, (modules / f"{name}.ko").read_bytes()) for name in MODULES]
    return images.publish(base.read_bytes() + gzip.compress(formats.cpio(entries), compresslevel=6, mtime=0),
                          target)
