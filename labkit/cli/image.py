"""``labkit image build|info``: the tiny guest's kernel and initramfs, in the cache."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labkit import images
from labkit.i18n import _


def register(p: argparse.ArgumentParser) -> None:
    """The options of `labkit image`; :mod:`labkit.cli` made ``p`` (with its one-line help)."""
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    build = verbs.add_parser("build", help=_("find or fetch a kernel and build the initramfs (cached)"))
    build.add_argument("--kernel", type=Path, help=_("use this bzImage/vmlinux (default: $LABKIT_KERNEL, "
                                                   "/boot, the cache, else apt-get download)"))
    build.add_argument("--command", help=_("a shell command the guest runs after its report"))
    build.add_argument("--refresh", action="store_true", help=_("ask the archive for a newer kernel package"))
    build.add_argument("--force", action="store_true", help=_("rebuild the initramfs even if cached"))
    build.add_argument("--into", type=Path, metavar="DIR",
                       help=_("build into DIR (e.g. a shared read-only cache for a workshop: "
                            "students point LABKIT_SHARED_CACHE at it)"))
    build.add_argument("--quiet", action="store_true", help=_("no progress bar, one line of output"))
    build.set_defaults(func=run_build)
    info = verbs.add_parser("info", help=_("the guest labkit would boot, and what is cached where"))
    info.add_argument("--json", action="store_true", help=_("print as JSON"))
    info.set_defaults(func=run_info)


def run_build(args: argparse.Namespace) -> int:
    image = images.tiny_guest(args.kernel, args.command, refresh=args.refresh, rebuild=args.force,
                              into=args.into, progress=not args.quiet)
    if args.quiet:
        print(f"guest image: Linux {image.kernel_release}, initramfs {image.initrd}")
    else:
        _show(image)
    return 0


def run_info(args: argparse.Namespace) -> int:
    image = images.tiny_guest(fetch=False, progress=False)
    cached = images.cache_info()
    if args.json:
        print(json.dumps({"image": image.to_dict(), "user_cache": str(images.user_cache()),
                          "user_cache_bytes": images.cache_size(), "user_cache_max_bytes": images.cache_max_bytes(),
                          "shared_caches": [str(p) for p in images.shared_caches()],
                          "cached": [{"path": str(f.path), "kind": f.kind, "size": f.size, "detail": f.detail,
                                      "damaged": f.damaged}
                                     for f in cached]}, indent=2))
        return 0
    _show(image)
    print(f"\nuser cache    {images.user_cache()}: {images.cache_size() / 2**20:.1f} MiB of at most "
          f"{images.cache_max_bytes() / 2**20:.0f} MiB ({images.CACHE_MAX_ENV}; least recently used images go "
          "first; labkit cleanup --cache empties it)")
    print(f"shared caches {', '.join(map(str, images.shared_caches())) or 'none'}")
    for f in cached:
        print(f"  {f.kind:<9} {f.size / 2**20:6.1f} MiB  {f.path}  ({f.detail})"
              + (f"\n            DAMAGED: {f.damaged}; fix: labkit image build --force" if f.damaged else ""))
    return 0


def _show(image: images.GuestImage) -> None:
    print(f"kernel   Linux {image.kernel_release}: {image.kernel}")
    print(f"         from {image.kernel_source}")
    print(f"vmlinux  {image.vmlinux or 'none (the kernel cannot be decompressed here: boots go through the firmware)'}")
    print(f"initrd   {image.initrd}")
    print(f"cmdline  {image.cmdline}")
    if image.command:
        print(f"command  {image.command}")
