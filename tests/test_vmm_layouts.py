"""labkit.vmm.bootparam matches <asm/bootparam.h>, field by field, as the C compiler lays it out."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import pytest

from labkit.kvm import abi
from labkit.vmm import bootparam

STRUCTS = {"boot_params": bootparam.boot_params, "setup_header": bootparam.setup_header,
           "boot_e820_entry": bootparam.boot_e820_entry}
CONSTANTS = ["LOADED_HIGH", "KEEP_SEGMENTS", "CAN_USE_HEAP", "XLF_KERNEL_64", "XLF_CAN_BE_LOADED_ABOVE_4G",
             "E820_MAX_ENTRIES_ZEROPAGE"]
#: The ioctls and structures labkit.kvm gained for this VMM, from <linux/kvm.h>.
KVM_IOCTLS = ["KVM_CREATE_IRQCHIP", "KVM_IRQ_LINE", "KVM_CREATE_PIT2"]
KVM_STRUCTS = ["kvm_irq_level", "kvm_pit_config"]


def fields(name: str) -> list[str]:
    """The structure's named fields (the ``_pad`` ones are the header's padding: their place is checked by the
    offsets of the fields around them and by the size)."""
    return [f[0] for f in STRUCTS[name]._fields_ if not f[0].startswith("_")]


@pytest.fixture(scope="module")
def header(tmp_path_factory) -> dict[str, int]:
    """Sizes, offsets and constants as gcc sees them in <asm/bootparam.h> and <linux/kvm.h>."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (scripts/setup.sh installs it)")
    lines = [f'printf("sizeof {s} %lu\\n", (unsigned long)sizeof(struct {s}));' for s in [*STRUCTS, *KVM_STRUCTS]]
    lines += [f'printf("offsetof {s}.{f} %lu\\n", (unsigned long)offsetof(struct {s}, {f}));'
              for s in STRUCTS for f in fields(s)]
    lines += [f'printf("{n} %lu\\n", (unsigned long)({n}));'
              for n in [*CONSTANTS, *KVM_IOCTLS, "KVM_PIT_SPEAKER_DUMMY"]]
    src = tmp_path_factory.mktemp("bootparam") / "layout.c"
    src.write_text("#include <asm/bootparam.h>\n#include <linux/kvm.h>\n#include <stddef.h>\n#include <stdio.h>\n"
                   "int main(void) {\n" + "\n".join(lines) + "\nreturn 0; }\n")
    exe = src.with_suffix("")
    subprocess.run(["gcc", "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in out.splitlines()}


@pytest.mark.parametrize("name", list(STRUCTS))
def test_structure_sizes_and_every_field_offset_match_the_header(header, name: str) -> None:
    cls = STRUCTS[name]
    assert ctypes.sizeof(cls) == header[f"sizeof {name}"]
    assert {f: getattr(cls, f).offset for f in fields(name)} == {f: header[f"offsetof {name}.{f}"]
                                                                for f in fields(name)}


def test_the_zero_page_is_one_page_with_the_setup_header_where_a_bzimage_has_it(header) -> None:
    assert header["sizeof boot_params"] == 4096
    assert header["offsetof boot_params.hdr"] == bootparam.SETUP_HEADER_OFFSET == 0x1F1


def test_constants_match_the_header(header) -> None:
    assert {n: getattr(bootparam, n) for n in CONSTANTS} == {n: header[n] for n in CONSTANTS}


def test_the_interrupt_ioctls_match_linux_kvm_h(header) -> None:
    assert {n: getattr(abi, n) for n in KVM_IOCTLS} == {n: header[n] for n in KVM_IOCTLS}
    assert abi.KVM_PIT_SPEAKER_DUMMY == header["KVM_PIT_SPEAKER_DUMMY"]
    assert {s: ctypes.sizeof(getattr(abi, s)) for s in KVM_STRUCTS} == {s: header[f"sizeof {s}"]
                                                                       for s in KVM_STRUCTS}
    assert [abi.IOCTL_NAMES[getattr(abi, n)] for n in KVM_IOCTLS] == KVM_IOCTLS
