"""Where an exit is handled: in the kernel (ioeventfd) vs returned to labkit's Python VMM, per guest ring.

Run by hand (timings are never asserted in tests):

    .venv/bin/python bench/exit_cost.py              # 5 interleaved rounds of 5,000 exits per ring
    .venv/bin/python bench/exit_cost.py -n 9 --exits 20000

Prints, for guest ring 0 and guest ring 3, the median (min–max) µs per exit of
each configuration and their same-run ratio.  On PVM hosts (no VT-x/AMD-V)
ring 0 runs through KVM's instruction emulator and each ring-3 ``out`` leaves
guest user mode through PVM's own switch: compare the rings, not only the rows.
"""

from __future__ import annotations

import argparse

from labkit.kvm import exit_cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=5, help="interleaved rounds per ring")
    parser.add_argument("--exits", type=int, default=5_000, help="guest writes per run")
    args = parser.parse_args()
    for ring in (0, 3):
        cost = exit_cost.measure(args.exits, repeats=args.rounds, ring=ring)
        print(f"guest ring {ring}:")
        print("  " + cost.table().replace("\n", "\n  "))


if __name__ == "__main__":
    main()
