"""Assemble and disassemble x86 code: guest programs stay readable assembly.

Guest programs in the lab are GNU assembler source, shown to the learner and
assembled here with binutils (``as``, ``ld``, ``objcopy``, ``readelf``).  The result
is a flat image to copy into guest memory (and the linked ELF, for loaders
such as multiboot), plus the address of every label.  Disassembly uses
capstone, so a register dump can show the instruction at RIP.
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from labkit import runtime
from labkit.errors import InvalidOptionError

Bits = Literal[16, 32, 64]
_BINUTILS = ("as", "ld", "objcopy", "readelf")
_TEMP_PATH = re.compile(r"^\S*/prog\.S:")


@dataclass(frozen=True)
class Program:
    """An assembled guest program."""

    source: str
    bits: Bits
    origin: int
    image: bytes  # flat binary, loaded at ``origin``
    elf: bytes  # the linked ELF executable
    symbols: dict[str, int]  # label -> guest address

    def __len__(self) -> int:
        return len(self.image)

    def symbol(self, name: str) -> int:
        """Guest address of label ``name``."""
        try:
            return self.symbols[name]
        except KeyError:
            raise InvalidOptionError(f"the program has no label {name!r}",
                                     f"labels are: {', '.join(sorted(self.symbols)) or 'none'}") from None


@dataclass(frozen=True)
class Instruction:
    address: int
    size: int
    mnemonic: str
    op_str: str

    def __str__(self) -> str:
        return f"{self.address:#06x}: {self.mnemonic} {self.op_str}".rstrip()


def _learner_view(stderr: str) -> str:
    """``as`` names its temp file; the learner knows only line numbers of their source."""
    return "\n".join(_TEMP_PATH.sub("line ", line) for line in stderr.strip().splitlines()
                     if not line.endswith("Assembler messages:"))


def _run(args: list[str], source: str) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        numbered = "\n".join(f"{i:3}: {line}" for i, line in enumerate(source.splitlines(), 1))
        raise InvalidOptionError(
            f"{Path(args[0]).name} failed:\n{_learner_view(proc.stderr)}\nsource:\n{numbered}",
            "fix the assembly error on the line number shown")


def assemble(source: str, bits: Bits = 64, origin: int = 0,
             defines: Mapping[str, int] | None = None) -> Program:
    """Assemble GNU ``as`` source (AT&T or ``.intel_syntax``) for ``bits``-bit mode at ``origin``.

    16-bit code is assembled as ``.code16`` in a 32-bit object: that is how
    real-mode boot code is built with binutils.  ``defines`` become absolute
    symbols (``as --defsym``), so a program can name the addresses and ports
    its VMM chose (``SERIAL_PORT``) instead of repeating numbers.
    """
    return _assemble(source, bits, origin, tuple(sorted((defines or {}).items())))


@functools.lru_cache(maxsize=128)
def _assemble(source: str, bits: Bits, origin: int, defines: tuple[tuple[str, int], ...]) -> Program:
    if bits not in (16, 32, 64):
        raise InvalidOptionError(f"bits must be 16, 32 or 64, not {bits!r}")
    if not 0 <= origin < 1 << 32:
        raise InvalidOptionError(f"origin {origin:#x} is outside the first 4 GiB", "load guest code low")
    as_, ld, objcopy, readelf = (runtime.require_program(t, "binutils") for t in _BINUTILS)
    prologue = f".code{bits};"  # same line as the source's first: as's line numbers stay the learner's
    emulation, as_mode = ("elf_x86_64", "--64") if bits == 64 else ("elf_i386", "--32")
    with runtime.scratch("asm") as d:  # in the user's run dir: a killed run leaves it to `labkit cleanup`
        (d / "prog.S").write_text(prologue + source + "\n")
        defsyms = [arg for name, value in defines for arg in ("--defsym", f"{name}={value:#x}")]
        _run([as_, as_mode, *defsyms, "-o", str(d / "prog.o"), str(d / "prog.S")], source)
        _run([ld, "-m", emulation, "-N", "-e", "0", f"-Ttext=0x{origin:x}",
              "-o", str(d / "prog.elf"), str(d / "prog.o")], source)
        _run([objcopy, "-O", "binary", str(d / "prog.elf"), str(d / "prog.bin")], source)
        # readelf, not nm: nm loads binutils' LTO plugins for every file (45 ms here against readelf's 2 ms;
        # ~1 s against 0.2 s inside the emulated AMD-V machine, for each program a notebook assembles there)
        listing = subprocess.run([readelf, "--syms", "--wide", str(d / "prog.elf")],
                                 capture_output=True, text=True, check=True).stdout
        return Program(source, bits, origin, (d / "prog.bin").read_bytes(),
                       (d / "prog.elf").read_bytes(), _labels(listing, {name for name, _ in defines}))


def _labels(listing: str, defined: set[str]) -> dict[str, int]:
    """Label -> address from ``readelf --syms --wide``: every symbol a section or an absolute value defines (not
    the file's name, the sections' own, nor the ``--defsym`` values the caller passed in)."""
    labels = {}
    for parts in (line.split() for line in listing.splitlines()):
        # Num: Value Size Type Bind Vis Ndx Name
        if len(parts) == 8 and parts[0].endswith(":") and parts[3] in ("NOTYPE", "FUNC", "OBJECT") \
                and parts[6] != "UND" and not parts[7].startswith(".") and parts[7] not in defined:
            labels[parts[7]] = int(parts[1], 16)
    return labels


@functools.lru_cache(maxsize=4)
def _disassembler(bits: Bits):
    import capstone

    mode = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}[bits]
    return capstone.Cs(capstone.CS_ARCH_X86, mode)


def disassemble(code: bytes, address: int = 0, bits: Bits = 64, count: int = 0) -> list[Instruction]:
    """Decode ``code`` located at ``address`` (``count=0``: as many as decode)."""
    return [Instruction(i.address, i.size, i.mnemonic, i.op_str)
            for i in _disassembler(bits).disasm(bytes(code), address, count)]
