"""Notebook 01's newer experiments: the notable memory map, kernel threads, kvm's license, the native loop."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
from pathlib import Path

import pytest

from labkit import asm, host
from labkit.lessons import kernel, native, payload
from labkit.lessons.kernel import Mapping


def test_notable_mappings_keeps_the_lessons_regions_and_counts_the_rest() -> None:
    regions = [Mapping(0x400000, 0x500000, "r-xp", "/usr/bin/python3.11"),
               Mapping(0x500000, 0x600000, "rw-p", "/usr/bin/python3.11"),
               Mapping(0x1000000, 0x2000000, "rw-p", "[heap]"),
               Mapping(0x7f0000000000, 0x7f0000001000, "r-xp", "/usr/lib/libc.so.6"),
               Mapping(0x7f0000001000, 0x7f0000002000, "rw-p", "[anonymous]"),
               Mapping(0x7f0000002000, 0x7f0000003000, "r--p", "/usr/share/locale/C.mo"),
               Mapping(0x7ffd00000000, 0x7ffd00001000, "r-xp", "[vdso]"),
               Mapping(0x7ffe00000000, 0x7ffe00021000, "rw-p", "[stack]")]
    shown, rest = kernel.notable_mappings(regions, program="/usr/bin/python3.11")
    assert [r.path for r in shown] == ["/usr/bin/python3.11", "[heap]", "[vdso]", "[stack]"]
    assert rest == {"shared-library regions": 1, "anonymous regions": 1, "other files": 2}


def test_notable_mappings_of_this_process_show_its_vdso_and_far_fewer_lines() -> None:
    regions = kernel.memory_map()
    shown, rest = kernel.notable_mappings(regions, program=os.path.realpath(os.sys.executable))
    assert any(r.path == "[vdso]" for r in shown) and len(shown) + sum(rest.values()) == len(regions)
    assert len(shown) <= 10 < len(regions)


def test_kernel_threads_have_no_user_memory_and_a_process_does() -> None:
    if not Path("/proc/2").exists():
        pytest.skip("pid 2 (kthreadd) is not visible in this PID namespace; these lab machines show it")
    threads = kernel.kernel_threads()
    assert threads and threads[0].pid == 2 and threads[0].name == "kthreadd"
    assert not any(t.user_memory for t in threads)
    assert "\nVmSize:" in Path(f"/proc/{os.getpid()}/status").read_text()  # what user_memory looks for


def _fake_modinfo(tmp_path: Path, output: str, rc: int = 0) -> None:
    tool = tmp_path / "modinfo"
    tool.write_text(f"#!/bin/sh\nprintf '{output}'\nexit {rc}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


def test_module_license_reads_modinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_modinfo(tmp_path, "GPL\\n")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    lic = kernel.module_license("kvm")
    assert (lic.license, lic.source) == ("GPL", "modinfo -F license kvm")
    assert lic.proprietary_loaded is (int(Path("/proc/sys/kernel/tainted").read_text()) & 1 == 1)


def test_module_license_unknown_is_not_no(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_modinfo(tmp_path, "", rc=1)  # modinfo without the module, and (here) no modules.builtin.modinfo
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(kernel.os, "uname", lambda: os.uname_result(("Linux", "h", "0.0-none", "", "x86_64")))
    lic = kernel.module_license("kvm")
    assert lic.license is None and "/lib/modules/0.0-none/modules.builtin.modinfo" in lic.source


def test_the_native_loop_is_the_payloads_loop_and_counts_cycles() -> None:
    loop = [f"{i.mnemonic} {i.op_str}" for i in asm.disassemble(asm.assemble(native.LOOP).image, bits=64)]
    assert "dec rcx" in loop and any(t.startswith(("jne", "jnz")) for t in loop)
    p = payload.build(1000, ring=3)
    count = p.program.symbol("count")
    guest = [f"{i.mnemonic} {i.op_str}"
             for i in asm.disassemble(p.program.image[count - payload.ORIGIN:], count, bits=64, count=2)]
    assert guest[0] == "dec rcx" and guest[1].startswith(("jne", "jnz"))
    run = native.count_down(1_000_000, repeats=3)
    assert run.loop_cycles > 0 and run.iterations_per_s > 0 and run.repeats == 3


def _rates(where: str, *millions: float) -> native.Rates:
    return native.Rates(where, tuple(m * 1e6 for m in millions))


def test_bare_vs_vm_judges_by_the_spread() -> None:
    base = _rates("native", 2000, 2200, 2100)
    faster = native.BareVsVm(base, {"kvm": _rates("kvm", 2300, 2400, 2500)})
    slower = native.BareVsVm(base, {"kvm": _rates("kvm", 1500, 1600, 1900)})
    overlap = native.BareVsVm(base, {"kvm": _rates("kvm", 1900, 2150, 2300)})
    assert faster.faster_than_native("kvm") and not faster.slower_than_native("kvm")
    assert slower.slower_than_native("kvm") and not slower.faster_than_native("kvm")
    assert not overlap.faster_than_native("kvm") and not overlap.slower_than_native("kvm")
    assert slower.ratio("kvm") == pytest.approx(1600 / 2100)
    assert "every run" in slower.verdict("kvm") and "overlap" in overlap.verdict("kvm")
    assert "median of 3" in slower.table()


def test_bare_vs_vm_runs_each_side_repeatedly() -> None:
    result = asyncio.run(native.bare_vs_vm(1_000_000, repeats=2))
    assert set(result.vms) <= {"kvm", "tcg"} and "tcg" in result.vms
    assert len(result.native.per_s) == 2 and all(len(r.per_s) == 2 for r in result.vms.values())
    assert all(v > 0 for r in (result.native, *result.vms.values()) for v in r.per_s)


def test_a_process_view_reads_as_a_sentence_not_a_repr() -> None:
    text = str(kernel.view(os.getpid()))
    assert text.startswith(f"pid {os.getpid()}, parent {os.getppid()}") and "ProcessView(" not in text


def test_a_stubborn_child_ignores_what_it_can_and_not_sigkill_or_sigstop() -> None:
    with kernel.child_process("stubborn") as child:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTSTP):
            child.send_signal(sig)
        assert kernel.wait_for_state(child.pid, {"stopped", "zombie"}, timeout=0.3) == "sleeping"
        child.send_signal(signal.SIGSTOP)
        assert kernel.wait_for_state(child.pid, {"stopped"}) == "stopped"
        child.send_signal(signal.SIGKILL)
        assert kernel.wait_for_state(child.pid, {"zombie"}) == "zombie"


def test_overcommit_measures_against_this_hosts_memory() -> None:
    assert kernel.overcommit(factor=0.01).physical == host.memory().total
