"""Shadow vs nested paging: the address-space guest on this host's KVM, and the prediction exercise's checker.

The comparison itself (kvm_amd reloaded with npt=1 and npt=0 inside the emulated AMD-V machine) runs where it
can only run, in one L1 boot: nbval's run of notebook 04b, both editions, with the reference prediction.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import needs_kvm
from framework import solution
from labkit import exercises
from labkit.errors import InvalidOptionError
from labkit.exercises import memory
from labkit.kvm import remap
from labkit.nested.paging import PagingComparison


@needs_kvm
def test_the_guest_rebuilds_its_address_space_and_kvm_counts_it() -> None:
    run = remap.run(rounds=3, pages=8)
    assert run.wrote_through  # the last round's stores reached the data pages its fresh entries named
    assert {"exits", "halt_exits"} <= set(run.counters) and run.counters["halt_exits"] == 1
    assert remap.RemapRun.from_json(run.to_json()) == run  # what L1 prints is what the host reads back
    with pytest.raises(InvalidOptionError, match="pages=513"):
        remap.run(pages=513)


def _measured(nested_s: float, shadow_s: float, shadow_faults: int) -> PagingComparison:
    def counted(seconds: float, faults: int) -> remap.RemapRun:
        return remap.RemapRun(200, 64, seconds, {"exits": faults + 3, "pf_fixed": faults, "tlb_flush": 200,
                                                 "halt_exits": 1, "io_exits": 0}, True)
    return PagingComparison(True, "", None, counted(nested_s, 135), counted(shadow_s, shadow_faults))


@pytest.fixture
def fresh() -> Iterator[None]:
    exercises.forget("paging-prediction")
    yield
    exercises.forget("paging-prediction")


def test_the_prediction_is_needed_first_and_the_template_fails(fresh: None) -> None:
    exercises.predict("paging-prediction", (None, None, None))  # the notebook's template
    assert "make your prediction first" in memory.paging_prediction(_measured(0.05, 1.4, 12_900)).message


def test_the_reference_prediction_matches_a_shadow_run_with_many_faults(fresh: None) -> None:
    ns = solution("paging-prediction")
    exercises.predict("paging-prediction", (ns["my_faster"], ns["my_factor"], ns["my_counter"]))
    assert memory.paging_prediction(_measured(0.05, 1.4, 12_900)).solved
    verdict = memory.paging_prediction(_measured(0.5, 0.6, 12_900))  # the same faults, barely slower: not over 5x
    assert not verdict.solved and "my_factor" in verdict.message
    assert not memory.paging_prediction(None).solved  # paging_demo = False: nothing to compare with


def test_a_prediction_outside_the_choices_is_named(fresh: None) -> None:
    exercises.predict("paging-prediction", ("npt", "over 5x", "exits"))
    verdict = memory.paging_prediction(_measured(0.05, 1.4, 12_900))
    assert not verdict.solved and "my_faster" in verdict.message and "my_counter" in verdict.message


def test_the_comparison_table_puts_both_modes_side_by_side() -> None:
    table = _measured(0.05, 1.4, 12_900).table().splitlines()
    assert "npt=1 (nested)" in table[0] and "npt=0 (shadow)" in table[0]
    assert any(row.split()[0] == "pf_fixed" and row.split()[1:] == ["135", "12,900"] for row in table)
