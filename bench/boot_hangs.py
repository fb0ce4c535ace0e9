"""Boot the tiny guest many times in a row; count the boots that hang, and time the power-off path.

Run by hand (nothing here is asserted in tests):

    .venv/bin/python bench/boot_hangs.py                 # 50 boots, one at a time
    .venv/bin/python bench/boot_hangs.py -n 50 --parallel 3 --vcpus 2

A boot "hangs at power-off" when the guest announced ``LABKIT-POWEROFF``
but QEMU was still running when :func:`labkit.qemu.boot` gave up on it (it
then keeps the result with a note, see ``qemu.boot``); any other failure is
counted with its first line.  The power-off path is timed from the moment
``LABKIT-POWEROFF`` reached the console to QEMU's exit.  ``--parallel``
boots several guests at once, to reproduce a loaded host.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import images, qemu  # noqa: E402
from labkit.errors import LabkitError  # noqa: E402

HUNG_NOTE = "the guest announced its power-off"


async def one_boot(image: images.GuestImage, vcpus: int, timeout: float) -> tuple[str, float | None, str]:
    """(outcome, seconds from LABKIT-POWEROFF on the console to QEMU's exit, detail) of one boot."""
    seen: dict[str, float] = {}
    tail = [""]  # the console's last bytes: a marker may arrive split over several chunks

    def watch(chunk: str) -> None:
        tail[0] = (tail[0] + chunk)[-(len(chunk) + 64):]
        for marker in (images.REPORT_MARKER, images.POWEROFF_MARKER):
            if marker not in seen and marker in tail[0]:
                seen[marker] = time.monotonic()

    try:
        result = await qemu.boot(image, accel="tcg", vcpus=vcpus, timeout=timeout, on_output=watch)
    except LabkitError as exc:
        return "failed", None, str(exc).splitlines()[0]
    if any(note.startswith(HUNG_NOTE) for note in result.notes):
        return "hung at power-off", None, result.console[-300:]
    times = result.times
    if times.poweroff_s is None or len(seen) < 2:
        return "ok", None, ""
    # launch → report → marker → exit: the marker's distance from the report is known from the callbacks
    marker_s = times.userspace_s + (seen[images.POWEROFF_MARKER] - seen[images.REPORT_MARKER])
    return "ok", max(0.0, times.poweroff_s - marker_s), ""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="boots in all (default 50)")
    parser.add_argument("--parallel", type=int, default=1, help="boots at once (default 1)")
    parser.add_argument("--vcpus", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=30.0, help="per boot, seconds (default 30)")
    args = parser.parse_args()
    image = images.tiny_guest(progress=False)
    config, _ = qemu.linux_config(image, qemu.choose_accel("tcg", "linux"), vcpus=args.vcpus)
    print(f"{args.n} boots, {args.parallel} at a time, {args.vcpus} vCPU, machine {config.machine}")
    outcomes: collections.Counter[str] = collections.Counter()
    latencies: list[float] = []
    start = time.monotonic()
    done = 0
    while done < args.n:
        batch = min(args.parallel, args.n - done)
        for outcome, latency, detail in await asyncio.gather(
                *(one_boot(image, args.vcpus, args.timeout) for _ in range(batch))):
            outcomes[outcome] += 1
            if latency is not None:
                latencies.append(latency)
            if outcome != "ok":
                print(f"  boot {done + 1}: {outcome}: {detail}")
            done += 1
    print(", ".join(f"{what}: {count}/{args.n}" for what, count in sorted(outcomes.items())))
    if latencies:
        print(f"LABKIT-POWEROFF → QEMU exit: median {statistics.median(latencies) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms ({len(latencies)} boots)")
    print(f"(took {time.monotonic() - start:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
