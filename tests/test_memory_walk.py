"""One guest address through every layer, on real /dev/kvm; guest RAM as the VMM's anonymous memory."""

from __future__ import annotations

import os

import pytest

from labkit.errors import InvalidOptionError
from labkit.exercises import memory as exercises
from labkit.kvm import walk

MIB = 2**20


def test_a_guest_store_followed_to_host_ram() -> None:
    path = walk.follow()
    offset = walk.EXAMPLE_GVA & 0xFFF
    assert path.gpa_kvm == path.gpa_walk == walk.EXAMPLE_PAGE + offset  # KVM's MMU and our walk agree
    assert [s.level for s in path.walk] == ["PML4", "PDPT", "PD", "PT"]
    assert path.walk[-1].entry & 0x60 == 0x60  # the guest's store set the PTE's accessed and dirty bits
    assert path.value_at_hva == walk.MAGIC  # the guest's 8 bytes, read at the host-virtual address
    if os.geteuid() == 0:
        assert path.hpa is not None and path.hpa % 4096 == offset
    else:
        assert path.hpa is None and "root" in (path.hpa_unknown_because or "")
    assert "host-physical" in walk.picture(path)


def test_guest_ram_costs_host_memory_only_once_touched() -> None:
    growth = walk.touch_rss(64, 16)
    assert growth.with_ram - growth.before < 2 * MIB  # 64 MiB of guest RAM, untouched: nearly free
    assert growth.after_touch - growth.with_ram >= 15 * MIB  # the guest touched 16 MiB of it
    with pytest.raises(InvalidOptionError, match="touch at most half"):
        walk.touch_rss(64, 48)


def test_the_pml4_exercise_walks_a_real_guest() -> None:
    gva = 0x0000_5555_1234_5678
    assert exercises.pml4_index((gva >> 39) & 511, gva).solved
    wrong = exercises.pml4_index(0, gva)
    assert not wrong.solved and "PML4 entry 170" in wrong.message
    assert not exercises.pml4_index(None, gva).solved
