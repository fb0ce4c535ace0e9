"""Shadow vs nested paging on notebook 04b's address-space guest: kvm_amd npt=1 and npt=0 in one L1.

Run by hand, as root (timings are never asserted in tests):

    .venv/bin/python bench/paging.py            # 5 runs per mode, interleaved, in one L1 boot
    .venv/bin/python bench/paging.py -n 9 --rounds 400

Inside one emulated AMD-V machine (``labkit nested``), ``python -m
labkit.kvm.npt --repeat N`` reloads ``kvm_amd`` before every run, alternating
``npt=1`` and ``npt=0``, and runs the raw KVM guest of :mod:`labkit.kvm.remap`
(``rounds`` address spaces of ``pages`` pages: write the entries, load CR3,
touch each page).  Printed: the medians of the guest's time and of KVM's
counters per mode, and the same-run ratio of the medians.  ``bench/npt.py``
measures whole L2 Linux boots with a fork+exec loop instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from labkit import images, nested  # noqa: E402
from labkit.kvm import npt, remap  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="runs per mode")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--pages", type=int, default=64)
    args = parser.parse_args()
    code = remap.program()
    buffer = bytearray()
    inner = nested.run_sync(
        [sys.executable, "-m", "labkit.kvm.npt", "--modules",
         str(nested.modules.kernel_modules(images.find_kernel(fetch=False))), "--rounds", str(args.rounds),
         "--pages", str(args.pages), "--repeat", str(args.n),
         "--code", json.dumps({"image": code.image.hex(), "symbols": code.symbols})],
        stdout=buffer.extend, stderr=lambda _data: None, cwd=TOP)
    rows = [json.loads(line[len(npt.MARK):]) for line in buffer.decode().splitlines() if line.startswith(npt.MARK)]
    runs = {mode: [remap.RemapRun.from_json(r["run"]) for r in rows if r["npt"] == mode] for mode in npt.MODES}
    print(f"{args.n} runs per mode, {args.rounds} address spaces of {args.pages} pages each, one L1 "
          f"(ready in {inner.ready_s:.1f} s)")
    print(f"{'median':22}{'npt=1 (nested)':>16}{'npt=0 (shadow)':>16}")
    print(f"{'guest time, s':22}" + "".join(f"{statistics.median(r.seconds for r in runs[m]):>16.3f}"
                                              for m in npt.MODES))
    for name in remap.COUNTERS:
        print(f"{name:22}" + "".join(f"{statistics.median(r.counters.get(name, 0) for r in runs[m]):>16,.0f}"
                                     for m in npt.MODES))
    times = {m: [r.seconds for r in runs[m]] for m in npt.MODES}
    print(f"same-run ratio of medians, shadow / nested: "
          f"{statistics.median(times[False]) / statistics.median(times[True]):.1f}x "
          f"(per pair: {', '.join(f'{s / n:.1f}' for n, s in zip(times[True], times[False]))})")
    return inner.status


if __name__ == "__main__":
    sys.exit(main())
