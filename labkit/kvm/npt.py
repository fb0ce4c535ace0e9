"""AMD's nested paging switched off and on: ``kvm_amd``'s ``npt`` parameter, and the run that compares the two.

Whether KVM uses nested paging (NPT) on AMD-V is a parameter of ``kvm_amd``,
read when the module loads (``/sys/module/kvm_amd/parameters/npt`` shows it).
:func:`compare` loads the module with ``npt=1`` and then ``npt=0`` and runs the
same guest (:mod:`labkit.kvm.remap`) under each, printing one JSON line per
mode.  It is meant for a machine whose KVM is ours alone — the emulated AMD-V
machine of ``labkit nested`` (:mod:`labkit.nested.paging` starts it there as
``python -m labkit.kvm.npt``): reloading a host's KVM would stop every VM on it.
This module imports little, since Python inside L1 runs under TCG.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from labkit import asm, runtime
from labkit.errors import LabkitError
from labkit.kvm import modes, remap

#: Marks a result line on the run's stdout.
MARK = "LABKIT-PAGING "
PARAMETER = Path("/sys/module/kvm_amd/parameters/npt")
#: The order the modes run in: nested paging (as L1 loads kvm_amd), then shadow paging.
MODES = (True, False)
#: A short run of each mode before the measured one: the first run also pays for TCG translating KVM's code.
WARM_UP_ROUNDS = 4


class NptError(LabkitError):
    """kvm_amd could not be loaded with the npt value asked for."""


def current() -> str:
    """``Y``, ``N``, or ``not loaded``: the npt of the running kvm_amd."""
    try:
        return PARAMETER.read_text().strip()
    except OSError:
        return "not loaded"


def load_kvm_amd(npt: bool, modules: Path) -> None:
    """Load ``kvm_amd`` with ``npt`` from the directory ``modules`` (reloading it if it runs with the other)."""
    wanted = "Y" if npt else "N"
    if current() == wanted:
        return
    busybox = runtime.require_program("busybox", "busybox-static")  # L1's root (this host's) may lack kmod
    subprocess.run([busybox, "rmmod", "kvm_amd"], check=False, capture_output=True)
    loaded = subprocess.run([busybox, "insmod", str(modules / "kvm-amd.ko"), "nested=1", f"npt={int(npt)}"],
                            capture_output=True, text=True, check=False)
    if loaded.returncode != 0 or current() != wanted:
        raise NptError(f"kvm_amd did not load with npt={int(npt)} ({loaded.stderr.strip() or current()})",
                       "run it inside the emulated AMD-V machine (labkit nested) as root, with no VM running")


def compare(modules: Path, rounds: int, pages: int, code: asm.Program, repeat: int = 1) -> None:
    """``repeat`` times, for each mode of :data:`MODES`: (re)load kvm_amd, warm up, run the guest; a JSON line
    each on stdout, progress on stderr (the modes interleaved, so a busy host slows both alike)."""
    for npt in MODES * repeat:
        load_kvm_amd(npt, modules)
        name = "nested paging" if npt else "shadow paging"
        print(f"kvm_amd npt={current()} ({name}): {rounds} address spaces of {pages} pages...",
              file=sys.stderr, flush=True)
        remap.run(WARM_UP_ROUNDS, pages, code=code)
        result = remap.run(rounds, pages, code=code)
        print(f"  {result.seconds:.3f} s, {result.exits:,} exits", file=sys.stderr, flush=True)
        print(MARK + json.dumps({"npt": npt, "run": result.to_json()}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.kvm.npt",
                                     description="the same guest under kvm_amd npt=1, then npt=0 (inside L1, root)")
    parser.add_argument("--modules", type=Path, required=True, help="the directory holding kvm-amd.ko")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--pages", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each mode, interleaved")
    parser.add_argument("--code", help="the guest as the host assembled it: {\"image\": hex, \"symbols\": {...}}")
    args = parser.parse_args(argv)
    given = json.loads(args.code) if args.code else None
    code = (asm.Program(remap.SOURCE, 64, modes.CODE_ADDR, bytes.fromhex(given["image"]), b"", given["symbols"])
            if given else remap.program())
    try:
        compare(args.modules, args.rounds, args.pages, code, args.repeat)
    except LabkitError as exc:
        print(f"labkit: error: {exc.what}\nfix: {exc.fix}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
