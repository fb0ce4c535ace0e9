"""The QEMU command line libvirt generated: its log, its processes, and a side-by-side with labkit's."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from labkit import libvirtd
from labkit.qemu.config import qemu_name
from labkit.virt.uri import uri_parts


def qemu_log_path(uri: str, name: str) -> Path:
    """Where libvirt logs QEMU's command line and stderr for domain ``name``."""
    logs = libvirtd.session_qemu_logs() if uri_parts(uri).path == "/session" else libvirtd.SYSTEM_QEMU_LOGS
    return logs / f"{name}.log"


def qemu_pids(name: str) -> tuple[int, ...]:
    """PIDs of the QEMU processes running domain ``name`` (libvirt passes ``-name guest=NAME,…``)."""
    return tuple(proc.pid for proc in psutil.process_iter(["cmdline"])
                 if qemu_name(proc.info["cmdline"] or []) == f"guest={name}")


def _strip_env(argv: list[str]) -> tuple[str, ...]:
    """Drop the ``VAR=value`` environment libvirt writes before the program."""
    i = 0
    while i < len(argv) and "=" in argv[i] and not argv[i].startswith("-") and "/" not in argv[i].split("=")[0]:
        i += 1
    return tuple(argv[i:])


def parse_qemu_log(text: str) -> tuple[str, ...]:
    """The command line of the *last* start recorded in a libvirt QEMU log (empty if none).

    libvirt writes ``… starting up …``, then the environment and the command
    line, one option per line, each ending in `` \\``.
    """
    starts = [i for i, line in enumerate(text.splitlines()) if ": starting up " in line]
    if not starts:
        return ()
    lines = text.splitlines()[starts[-1] + 1:]
    joined = []
    for line in lines:
        joined.append(line[:-1] if line.endswith("\\") else line)
        if not line.endswith("\\"):
            break
    return _strip_env(shlex.split(" ".join(joined)))


def option_groups(argv: Iterable[str]) -> dict[str, list[str]]:
    """A QEMU command line as ``{option: [values]}`` (the program under ``''``; flags get ``''``)."""
    argv = list(argv)
    groups: dict[str, list[str]] = {"": argv[:1]}
    i = 1
    while i < len(argv):
        opt = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None
        groups.setdefault(opt, []).append(value if value is not None else "")
        i += 2 if value is not None else 1
    return groups


@dataclass(frozen=True)
class OptionRow:
    """One QEMU option, as libvirt and as labkit.qemu use it ('' = flag without value, () = absent)."""

    option: str
    libvirt: tuple[str, ...]
    labkit: tuple[str, ...]


def compare_command_lines(libvirt_argv: Iterable[str], labkit_argv: Iterable[str]) -> tuple[OptionRow, ...]:
    """Side by side: every option either command line uses, in libvirt's order, then labkit's extras."""
    a, b = option_groups(libvirt_argv), option_groups(labkit_argv)
    order = list(a) + [opt for opt in b if opt not in a]
    return tuple(OptionRow(opt or "(program)", tuple(a.get(opt, ())), tuple(b.get(opt, ()))) for opt in order)
