"""``python -m labkit.i18n compile``: write every catalog's ``.mo`` (run by ``scripts/setup.sh``)."""

from __future__ import annotations

import sys

from labkit.i18n import catalogs


def main(argv: list[str]) -> int:
    """Compile the catalogs; any other command is a usage error (exit 2)."""
    if argv != ["compile"]:
        print("labkit: error: unknown command\nfix: python -m labkit.i18n compile", file=sys.stderr)
        return 2
    written = catalogs.compile_all()
    print(f"compiled {len(written)} message catalogs under {catalogs.LOCALE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
