"""labkit.kvm.exit_cost: the same guest writes handled inside the kernel (ioeventfd) or by the user-space VMM."""

from __future__ import annotations

import pytest

from conftest import needs_kvm
from labkit.errors import InvalidOptionError
from labkit.kvm import exit_cost


def _timings(in_kernel: bool, *seconds: float) -> exit_cost.ExitCostSummary:
    return exit_cost.ExitCostSummary(tuple(exit_cost.ExitCostResult(in_kernel, 1000, s, 1000 if in_kernel else 0,
                                                 0 if in_kernel else 1000) for s in seconds))


def test_median_spread_and_ratio_per_exit() -> None:
    cost = exit_cost.ExitCost(_timings(True, 0.002, 0.004, 0.003), _timings(False, 0.030, 0.020, 0.040))
    assert cost.kernel.median_us == pytest.approx(3.0) and cost.kernel.spread_us == pytest.approx((2.0, 4.0))
    assert cost.ratio == pytest.approx(10.0) and cost.apart
    assert "median of 3" in cost.table()


def test_overlapping_runs_are_not_apart() -> None:
    cost = exit_cost.ExitCost(_timings(True, 0.002, 0.025), _timings(False, 0.020, 0.030))
    assert not cost.apart


@pytest.mark.parametrize("exits, ring", [(0, 0), (1.5, 0), (10, 1)])
def test_bad_options_are_refused(exits: object, ring: int) -> None:
    with pytest.raises(InvalidOptionError):
        exit_cost.run_once(exits, True, ring)  # type: ignore[arg-type]


@needs_kvm
def test_an_ioeventfd_keeps_the_writes_in_the_kernel() -> None:
    """With the ioeventfd every write is counted by the kernel and none reaches the VMM; without it, all do."""
    assert exit_cost.supported()
    kernel = exit_cost.run_once(300, in_kernel=True)
    vmm = exit_cost.run_once(300, in_kernel=False)
    assert (kernel.kernel_count, kernel.vmm_count) == (300, 0)
    assert (vmm.kernel_count, vmm.vmm_count) == (0, 300)
    assert kernel.seconds > 0 and vmm.seconds > 0


@needs_kvm
def test_measure_interleaves_both_and_keeps_every_run() -> None:
    cost = exit_cost.measure(exits=200, repeats=2)
    assert [r.in_kernel for r in cost.kernel.runs] == [True, True]
    assert [r.in_kernel for r in cost.vmm.runs] == [False, False]
    assert all(r.exits == 200 for r in (*cost.kernel.runs, *cost.vmm.runs))


def test_each_round_keeps_the_fastest_of_its_tries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run the scheduler interrupted (the slow one of each round here) is left out, in both configurations."""
    seconds = iter([0.9, 0.1, 0.2, 5.0, 1.0, 1.1,    # round 1: kernel tries, then VMM tries
                    0.1, 0.3, 0.2, 1.2, 0.9, 9.0])   # round 2
    monkeypatch.setattr(exit_cost, "run_once", lambda exits, in_kernel, ring, timeout: exit_cost.ExitCostResult(
        in_kernel, exits, next(seconds), exits if in_kernel else 0, 0 if in_kernel else exits))
    cost = exit_cost.measure(exits=100, repeats=2, tries=3)
    assert [r.seconds for r in cost.kernel.runs] == [0.1, 0.1]
    assert [r.seconds for r in cost.vmm.runs] == [1.0, 0.9]


@pytest.mark.parametrize("tries", [0, -1, 1.5, "3"])
def test_tries_must_be_a_positive_whole_number(tries: object) -> None:
    with pytest.raises(InvalidOptionError, match="tries must be"):
        exit_cost.measure(exits=10, repeats=1, tries=tries)  # type: ignore[arg-type]
