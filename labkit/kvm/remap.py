"""A guest that keeps rebuilding its address space: the workload where shadow and nested paging differ.

Every ``fork``/``exec`` of a guest OS writes page-table entries, loads a new
CR3 and touches the freshly mapped pages.  With **nested paging** (AMD's
NPT, Intel's EPT) none of that concerns the hypervisor: the CPU walks the
guest's tables and the host's itself, so the guest writes its tables, loads
CR3 and takes its TLB misses without leaving guest mode.  With **shadow
paging** KVM must keep its own tables (guest-virtual → host-physical) in step
with the guest's: it write-protects the guest's page tables (a write to one
is a page fault KVM handles: ``mmu_pte_write``, or it gives up on a table
written too often: ``mmu_flooded``), intercepts every CR3 load, and fills its
shadow entries lazily — the first access through a new mapping is a page
fault that exits to KVM (``pf_fixed``).

:func:`run` runs that workload in a raw KVM guest (:mod:`labkit.kvm.machine`),
``rounds`` times over ``pages`` pages, and reads what KVM counted for the VM
and its vCPU (:mod:`labkit.kvm.stats`): whichever paging the host's KVM
uses, the same guest, the same work.  :mod:`labkit.nested.paging` runs it
under ``kvm_amd`` with ``npt=1`` and ``npt=0`` in one emulated AMD-V machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from labkit import asm
from labkit.errors import InvalidOptionError
from labkit.i18n import _
from labkit.i18n import noop as N_
from labkit.kvm import abi, modes
from labkit.kvm.guests import build
from labkit.kvm.machine import Machine
from labkit.kvm.stats import Stats

#: Guest-virtual base of the rebuilt region: PML4 entry 1 (512 GiB), far from the identity-mapped first GiB.
REGION = 1 << 39
#: Guest-physical layout (inside the identity map): the region's PDPT, its page directory, its page table,
#: then the data pages it maps.
PDPT, PD, PT, DATA = 0x10_0000, 0x10_1000, 0x10_2000, 0x20_0000
MEMORY = 8 << 20
MAX_PAGES = 512  # one page table; the rounds alternate between two sets of ``pages`` data pages
#: KVM's counters worth showing for this workload, and what each counts (vCPU's, then the VM's).
COUNTERS: dict[str, str] = {
    "exits": N_("every exit from the guest, whoever handled it"),
    "pf_taken": N_("page faults KVM's MMU took (shadow: the guest's own accesses; nested: NPT faults)"),
    "pf_fixed": N_("of them, fixed by installing a (shadow or nested) page-table entry"),
    "pf_emulate": N_("of them, resolved by emulating the faulting instruction (a write to a guest page table)"),
    "tlb_flush": N_("TLB flushes KVM made for the guest"),
    "halt_exits": N_("hlt exits"),
    "io_exits": N_("port I/O exits"),
    "mmu_pte_write": N_("writes to a guest page table that KVM intercepted (VM)"),
    "mmu_flooded": N_("guest page tables written so often that KVM stopped shadowing them (VM)"),
    "mmu_shadow_zapped": N_("shadow page tables KVM threw away (VM)"),
}


def legend() -> str:
    """:data:`COUNTERS`, one a line: the counter's name and what it counts, in the language of the moment."""
    return "\n".join(f"{name:18} " + _(meaning) for name, meaning in COUNTERS.items())


#: The workload; the VMM passes the number of rounds in r8 and of pages in r9.
SOURCE = """
.intel_syntax noprefix
start:
    mov rax, PDPT | 7              # PML4[1] → the region's PDPT → PD → PT
    mov [PML4 + 8], rax
    mov rax, PD | 7
    mov [PDPT], rax
    mov rax, PT | 7
    mov [PD], rax
round:                             # one new address space: map r9 pages, load CR3, touch each
    mov rdx, r8                    # odd rounds map page j to data page j + r9, even ones to j
    and rdx, 1
    imul rdx, r9
    xor rcx, rcx
map:
    lea rax, [rcx + rdx]
    shl rax, 12
    add rax, DATA | 7
    mov [PT + rcx * 8], rax        # a page-table entry written by the guest
    inc rcx
    cmp rcx, r9
    jne map
    mov rax, cr3                   # a CR3 load: a new address space, the TLB flushed
    mov cr3, rax
    xor rcx, rcx
    movabs rdi, REGION
touch:
    mov [rdi], r8                  # the first access through each new mapping
    add rdi, 4096
    inc rcx
    cmp rcx, r9
    jne touch
    dec r8
    jnz round
    hlt
"""


@dataclass(frozen=True)
class RemapRun:
    """One run of the workload: how long the guest took and what KVM counted meanwhile."""

    rounds: int
    pages: int
    seconds: float  # wall time from the first KVM_RUN to the guest's hlt
    counters: dict[str, int]  # :data:`COUNTERS` this kernel has, the vCPU's and the VM's, grown over the run
    wrote_through: bool  # the last round's stores landed in the data pages its page-table entries named

    @property
    def exits(self) -> int:
        return self.counters["exits"]

    def to_json(self) -> dict[str, object]:
        return {"rounds": self.rounds, "pages": self.pages, "seconds": self.seconds, "counters": self.counters,
                "wrote_through": self.wrote_through}

    @classmethod
    def from_json(cls, data: dict) -> RemapRun:
        return cls(int(data["rounds"]), int(data["pages"]), float(data["seconds"]),
                   {str(k): int(v) for k, v in data["counters"].items()}, bool(data["wrote_through"]))


def program() -> asm.Program:
    """The workload, assembled (once per process: :func:`labkit.asm.assemble` caches it)."""
    return build(SOURCE, "long", PML4=modes.PML4_ADDR, PDPT=PDPT, PD=PD, PT=PT, DATA=DATA, REGION=REGION)


def run(rounds: int = 200, pages: int = 64, timeout: float = 120.0, code: asm.Program | None = None) -> RemapRun:
    """Run the workload on this host's KVM; KVM's counters around it (needs ``KVM_GET_STATS_FD``, Linux 5.14+).

    ``code``: :func:`program` assembled elsewhere (inside the emulated AMD-V machine binutils run under TCG,
    seconds per program, while the host assembles it in milliseconds).
    """
    for name, value, top in (("rounds", rounds, 1 << 20), ("pages", pages, MAX_PAGES)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise InvalidOptionError(f"{name}={value!r}: 1 to {top}", "e.g. rounds=200, pages=64")
    with Machine(code or program(), "long", memory_size=MEMORY) as machine:
        if not machine.kvm.check_extension(abi.KVM_CAP_BINARY_STATS_FD):
            raise InvalidOptionError("this kernel's KVM has no binary statistics (KVM_GET_STATS_FD, Linux 5.14+)",
                                     "run it on a newer kernel (the lab's cloud kernel in `labkit nested` has them)")
        machine.vcpu.set_regs(r8=rounds, r9=pages)
        stats = (Stats(machine.vcpu), Stats(machine.vm))
        try:
            before = _counters(stats)
            started = time.perf_counter()
            machine.run(max_exits=10, timeout=timeout)
            seconds = time.perf_counter() - started
            after = _counters(stats)
            # the last round (r8 = 1, odd) mapped page j to data page j + pages and stored 1 in each
            wrote = all(machine.memory.read_u64(DATA + (pages + j) * 4096) == 1 for j in range(pages))
        finally:
            for s in stats:
                s.close()
    return RemapRun(rounds, pages, seconds, {name: after[name] - before[name] for name in COUNTERS if name in after},
                    wrote)


def _counters(stats: tuple[Stats, ...]) -> dict[str, int]:
    return {name: value for s in stats for name, value in s.counters().items()}
