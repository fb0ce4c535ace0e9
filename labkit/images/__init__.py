"""The tiny guest: a distribution kernel and a busybox initramfs, built offline and cached.

A guest needs a kernel and something to run.  labkit takes the kernel from
where it already is (an explicit path, ``$LABKIT_KERNEL``, this host's
``/boot``) or from the distribution's package archive (``apt-get download`` of
the small cloud kernel, unpacked without installing it), and builds the
initramfs itself: a gzip'd newc cpio holding ``busybox`` from busybox-static,
a tiny CPUID program assembled by :mod:`labkit.asm`, and an ``/init`` script
(``labkit/images/tiny_guest/init.sh``) that prints one machine-readable line::

    LABKIT-REPORT {"v":1,"kernel":"6.1.0-…","cpus":1,"mem_kib":…,"flags":"…",…}

and powers the machine off.  :func:`parse_report` turns a console transcript
into a :class:`GuestReport`.

Stable API (the QEMU and libvirt layers both boot this guest):

* :func:`tiny_guest` → :class:`GuestImage` (``kernel``, ``initrd``, ``cmdline``, …)
* :func:`parse_report` → :class:`GuestReport`
* :func:`cache_info` → what is cached where (``labkit image info``)

Everything built is keyed by content (a changed ``init.sh``, busybox or kernel
gives a new file; an unchanged one is reused by every notebook of the user)
and kept in :mod:`labkit.images.cache`: private to the user, verified by hash
on every use, capped; or in a shared read-only cache an instructor pre-builds
with ``labkit image build --into``.

Each boot gets a :func:`nonce`: the report line and the command's markers
carry it, so a guest command cannot fake the end of its output or its exit
status (see :func:`with_nonce`).

The package, one job per module: :mod:`~labkit.images.report` (the report
protocol), :mod:`~labkit.images.cache` (publish, locks, prune, info),
:mod:`~labkit.images.guest_kernel` (find or fetch the kernel),
:mod:`~labkit.images.initramfs` and :mod:`~labkit.images.guest` (the image
ready to boot); their public names are all here, as ``images.X``.
"""

from labkit.errors import GuestPanicError
from labkit.images.cache import (
    CACHE_MAX_ENV,
    CACHE_MAX_MIB,
    PRUNE_MIN_AGE_S,
    CorruptCacheError,
    cache_max_bytes,
    cache_size,
    check_into,
    clear_cache,
    prune,
    publish,
    reading,
    shared_caches,
    user_cache,
    verified,
)
from labkit.images.console import KNOWN_LINES, ExplainedLine, explain, report_rows, without_report
from labkit.images.errors import ImageError, ReportNotFoundError
from labkit.images.guest import BASE_CMDLINE, CachedFile, GuestImage, cache_info, tiny_guest
from labkit.images.guest_kernel import (
    KERNEL_MAX_BYTES,
    KERNEL_PACKAGES,
    Kernel,
    fetch_kernel,
    find_kernel,
    kernel_package,
    read_kernel_file,
)
from labkit.images.initramfs import GUEST_SOURCES, build_initramfs, initramfs_key
from labkit.images.report import (
    COMMAND_BEGIN,
    COMMAND_END,
    POWEROFF_MARKER,
    REPORT_MARKER,
    GuestReport,
    find_panic,
    nonce,
    parse_report,
    poweroff_announced,
    report_prefix,
    with_nonce,
)

__all__ = [
    "BASE_CMDLINE", "CACHE_MAX_ENV", "CACHE_MAX_MIB", "COMMAND_BEGIN", "COMMAND_END", "GUEST_SOURCES",
    "KERNEL_MAX_BYTES", "KERNEL_PACKAGES", "KNOWN_LINES", "POWEROFF_MARKER", "PRUNE_MIN_AGE_S", "REPORT_MARKER",
    "CachedFile", "CorruptCacheError", "ExplainedLine", "GuestImage", "GuestPanicError", "GuestReport",
    "ImageError", "Kernel", "ReportNotFoundError", "build_initramfs", "cache_info", "cache_max_bytes", "cache_size",
    "check_into", "clear_cache", "explain", "fetch_kernel", "find_kernel", "find_panic", "initramfs_key",
    "kernel_package", "nonce", "parse_report", "poweroff_announced", "prune", "publish", "read_kernel_file", "reading",
    "report_prefix", "report_rows", "shared_caches", "tiny_guest", "user_cache", "verified", "with_nonce",
    "without_report",
]
