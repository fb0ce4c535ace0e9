"""labkit.lessons.payload: the bare-metal payload under TCG and, where /dev/kvm works, under KVM."""

from __future__ import annotations

import asyncio

import pytest

from conftest import needs_kvm
from labkit.errors import InvalidOptionError, MissingToolError
from labkit.lessons import payload


def test_payload_image_is_a_64k_firmware() -> None:
    p = payload.build(iterations=1000, ring=3)
    assert len(p.program.image) == 0x10000 and p.path.read_bytes() == p.program.image
    reset = p.program.image[0xFFF0:0xFFF5]  # jmp far F000:start16
    assert reset[0] == 0xEA and int.from_bytes(reset[3:5], "little") == 0xF000
    assert payload.build(iterations=1000, ring=3).path == p.path  # cached by content
    assert payload.build(iterations=1001, ring=3).path != p.path


@pytest.mark.parametrize("kwargs, message", [
    (dict(ring=1), "ring must be 0"), (dict(iterations=0), "positive"), (dict(iterations=2.5), "positive")])
def test_bad_payload_options(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        payload.build(**kwargs)


@pytest.mark.parametrize("ring", [3, 0])
def test_payload_under_tcg(ring: int) -> None:
    run = asyncio.run(payload.run("tcg", iterations=1_000_000, ring=ring))
    assert run.finished and run.exit_status == payload.EXIT_STATUS
    assert run.accel.name == "tcg" and run.loop_cycles and run.loop_cycles > 0
    assert ("ring 3" in run.console) == (ring == 3) and "loop end" in run.console
    assert run.first_output_s is not None and run.first_output_s < run.total_s


@needs_kvm
@pytest.mark.parametrize("ring, iterations", [(3, 10_000_000), (0, 20_000)])
def test_payload_under_kvm(ring: int, iterations: int) -> None:
    """QEMU + KVM for real, on every host with /dev/kvm (Linux itself may not boot under KVM there)."""
    run = asyncio.run(payload.run("kvm", iterations=iterations, ring=ring))
    assert run.finished and run.accel.name == "kvm"
    assert "-accel" in run.command_line and run.command_line[run.command_line.index("-accel") + 1] == "kvm"
    assert run.iterations_per_s and run.iterations_per_s > 0


@needs_kvm
def test_compare_runs_kvm_then_tcg() -> None:
    runs = asyncio.run(payload.compare(iterations=1_000_000))
    assert [r.accel.name for r in runs] == ["kvm", "tcg"] and all(r.finished for r in runs)


def test_payload_refuses_a_missing_qemu(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    payload.build(iterations=10)  # assembled (and cached) while binutils are still on PATH
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="qemu-system-x86_64"):
        asyncio.run(payload.run("tcg", iterations=10))
