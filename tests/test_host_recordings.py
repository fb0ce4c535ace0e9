"""Every recorded real host under tests/fixtures/hosts: the verdict a virtualization engineer would sign.

The expected values below were written by hand from each host's SOURCE (what
was published), not from the code's output: bare metal or VM, hypervisor,
architecture, CPU flags, KVM module states, VT-x/AMD-V state, verdict kind,
and a phrase the fix must contain.  Then, for every host, generic rules
check that no printed fix contradicts the evidence printed with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from conftest import HOSTS
from labkit import host

ROOT = host.User(0, frozenset({0}))
U = "unknown"
ALL_UNKNOWN = {"kvm": U, "kvm_intel": U, "kvm_amd": U, "kvm_pvm": U}


@dataclass(frozen=True)
class Expect:
    virtual: bool | None
    hypervisor: str | None
    arch: str
    flags: frozenset[str] | None  # flags that must be there; None: no flags were recorded
    no_flags: frozenset[str] = frozenset()  # flags that must not be there
    modules: dict[str, str] = field(default_factory=lambda: dict(ALL_UNKNOWN))
    vt: str = "unknown"
    kind: str = "unknown"
    fix: str | None = None  # a phrase of the fix; None: no fix at all
    model: str | None = None
    detail: str | None = None
    provider: str | None = None


F = frozenset
INTEL = F({"vmx"})
AMD = F({"svm"})
NOHV = F({"hypervisor"})
HV = F({"hypervisor"})
MODPROBE_INTEL = "sudo modprobe kvm_intel"
NESTED_KVM = "nested=1 for kvm_intel/kvm_amd"

EXPECTED: dict[str, Expect] = {
    # --- bare metal, Intel, old and new (only cpuinfo published: modules and /dev/kvm unknown)
    "intel-xeon-e5620-westmere": Expect(False, None, "x86", INTEL, NOHV, vt="offered", fix=MODPROBE_INTEL,
                                        model="Intel(R) Xeon(R) CPU           E5620  @ 2.40GHz"),
    "intel-xeon-e5-2660v3-haswell": Expect(False, None, "x86", INTEL | F({"ept"}), NOHV, vt="offered",
                                           fix=MODPROBE_INTEL),
    "intel-i5-6500-skylake": Expect(False, None, "x86", INTEL | F({"ept_ad"}), NOHV, vt="offered",
                                    fix=MODPROBE_INTEL, model="Intel(R) Core(TM) i5-6500 CPU @ 3.20GHz"),
    "intel-desktop-flags-only": Expect(False, None, "x86", INTEL | F({"ept", "vpid"}), NOHV, vt="offered",
                                       fix=MODPROBE_INTEL, model="unknown"),
    # --- firmware-disabled VT-x / AMD-V: dmesg says so; the fix is the firmware, then modprobe
    "intel-vtx-disabled-by-bios": Expect(None, None, "unknown", None, vt="disabled by firmware", kind="none",
                                         fix="in the firmware (BIOS/UEFI) setup"),
    "amd-ryzen-4750g-svm-disabled": Expect(None, None, "unknown", None, vt="disabled by firmware", kind="none",
                                           fix="enable AMD-V in the firmware"),
    # --- bare metal, AMD, old (K10) and new (Zen 2), and Hygon (uses kvm_amd)
    "amd-k10-svm-flags": Expect(False, None, "x86", AMD | F({"npt", "3dnow"}), NOHV, vt="offered",
                                fix="sudo modprobe kvm_amd"),
    "amd-ryzen-3700u-laptop": Expect(False, None, "x86", AMD | F({"npt", "sev"}), NOHV, vt="offered",
                                     fix="sudo modprobe kvm_amd"),
    "hygon-c86-kvm-amd": Expect(None, None, "x86_64", None,
                                modules={"kvm": "loaded module", "kvm_intel": "not loaded",
                                         "kvm_amd": "loaded module", "kvm_pvm": "not loaded"},
                                vt="offered", kind="hardware", fix="ls -l /dev/kvm"),
    # --- a CPU that never had VT-x (and is 32-bit only: an i686 netbook)
    "atom-n270-netbook": Expect(None, None, "unknown", None, vt="not in this CPU", kind="none",
                                fix="this CPU has no VT-x/AMD-V", model="Intel(R) Atom(TM) CPU N270 @ 1.60GHz"),
    # --- guests of KVM/QEMU
    "kvm-guest-qemu-virtual-cpu": Expect(True, "KVM/QEMU", "x86", HV, INTEL | AMD, vt="not exposed by the hypervisor",
                                         fix=NESTED_KVM),
    "kvm-guest-debian8-dmesg": Expect(True, "KVM", "unknown", None, fix=NESTED_KVM),
    "nutanix-ahv-guest": Expect(True, "KVM", "x86", HV, INTEL | AMD, vt="not exposed by the hypervisor",
                                fix=NESTED_KVM, provider="Nutanix AHV"),
    "epyc-milan-guest-no-svm": Expect(True, host.UNKNOWN_HYPERVISOR, "x86_64", HV | F({"vmmcall"}), AMD,
                                      vt="not exposed by the hypervisor",
                                      fix="hypervisor was not identified", model="AMD EPYC-Milan Processor"),
    "proxmox-q35-guest": Expect(True, "KVM/QEMU", "unknown", None, fix="enable nested virtualization"),
    # --- Xen HVM and PV
    "xen-hvm-aws": Expect(True, "Xen", "unknown", None, fix="nestedhvm=1", detail="Xen HVM guest"),
    "xen-pv-aws": Expect(True, "Xen", "unknown", None, kind="none", fix="a Xen PV guest never gets VT-x/AMD-V",
                         detail="Xen PV guest (paravirtualized: never gets VT-x/AMD-V)"),
    # --- VMware, VirtualBox, Parallels, bhyve
    "vmware-guest": Expect(True, "VMware", "unknown", None, fix="Virtualize Intel VT-x/EPT"),
    "vmware-workstation-uefi": Expect(True, "VMware", "unknown", None, fix="Virtualize Intel VT-x/EPT"),
    "virtualbox-guest": Expect(True, "VirtualBox", "unknown", None, fix="--nested-hw-virt on"),
    "parallels-guest": Expect(True, "Parallels", "x86_64", None, fix="in Parallels"),
    "bhyve-guest": Expect(True, "bhyve", "unknown", None, fix="bhyve gives its guests no VT-x/AMD-V"),
    # --- Hyper-V generation 1 and 2, and WSL2 with and without nested virtualization
    "hyperv-gen1-azure": Expect(True, "Microsoft Hyper-V", "unknown", None, fix="ExposeVirtualizationExtensions",
                                detail="generation 1 (BIOS)"),
    "hyperv-gen2-uefi": Expect(True, "Microsoft Hyper-V", "unknown", None, fix="ExposeVirtualizationExtensions",
                               detail="generation 2 (UEFI)"),
    "hyperv-debian9-ws2012r2": Expect(True, "Microsoft Hyper-V", "unknown", None,
                                      fix="ExposeVirtualizationExtensions"),
    "wsl2-nested-kvm": Expect(True, "Microsoft Hyper-V", "unknown", None, vt="offered", kind="hardware", fix=None),
    "wsl2-no-nested": Expect(True, "Microsoft Hyper-V", "unknown", None, vt="not exposed by the hypervisor",
                             kind="none", fix="nestedVirtualization=true"),
    # --- clouds: GCE, Azure, AWS Nitro VM and bare metal
    "gce-vm": Expect(True, "KVM", "unknown", None, fix="--enable-nested-virtualization",
                     provider="Google Compute Engine"),
    "azure-vm-kernel-only": Expect(None, None, "x86_64", None, fix="labkit host --record"),
    "aws-t3-small-nitro": Expect(True, "KVM", "unknown", None, fix="*.metal", provider="Amazon EC2 (Nitro)"),
    "aws-m6g-metal": Expect(False, None, "unknown", None, fix="sudo modprobe", provider="Amazon EC2"),
    "nvr-n5105-dmi-only": Expect(None, None, "unknown", None, fix="labkit host --record"),
    # --- Arm: cloud VM, boards (64- and 32-bit kernels), an Apple-silicon VM
    "oracle-ampere-neoverse-n1": Expect(None, None, "aarch64", F({"asimd"}), vt="unknown",
                                        fix="boot the kernel at EL2", model="Arm Neoverse-N1"),
    "rpi4-arm64": Expect(None, None, "aarch64", F({"asimd"}), fix="boot the kernel at EL2", model="Arm Cortex-A72"),
    "rpi4-armv7l": Expect(None, None, "arm", F({"neon"}), kind="none", fix="install a 64-bit (arm64) kernel",
                          model="Arm Cortex-A72"),
    "arm64-implementer-0x70": Expect(None, None, "aarch64", F({"asimd"}), fix="boot the kernel at EL2",
                                     model="implementer 0x70 part 0x662"),
    "apple-m1-utm-vm": Expect(True, "Apple Hypervisor.framework", "aarch64", F({"asimd"}),
                              fix="nested virtualization", model="Apple (part number hidden by the hypervisor)"),
    # --- the lab's own kinds (full recordings)
    "intel-vtx-baremetal": Expect(False, None, "x86_64", INTEL, NOHV,
                                  {"kvm": "loaded module", "kvm_intel": "loaded module", "kvm_amd": "absent",
                                   "kvm_pvm": "absent"}, "offered", "hardware", None),
    "amd-svm-baremetal": Expect(False, None, "x86_64", AMD, NOHV,
                                {"kvm": "loaded module", "kvm_intel": "absent", "kvm_amd": "loaded module",
                                 "kvm_pvm": "absent"}, "offered", "hardware", None),
    "kvm-guest-no-nested": Expect(True, "KVM", "x86_64", HV, INTEL | AMD,
                                  {"kvm": "absent", "kvm_intel": "absent", "kvm_amd": "absent", "kvm_pvm": "absent"},
                                  "not exposed by the hypervisor", "none", NESTED_KVM),
    "no-dev-kvm": Expect(False, None, "x86_64", F(), INTEL | AMD | NOHV,
                         {"kvm": "absent", "kvm_intel": "absent", "kvm_amd": "absent", "kvm_pvm": "absent"},
                         "unknown", "none", "rdmsr 0x3a"),
    "pvm-nested": Expect(True, "KVM", "x86_64", HV, INTEL | AMD,
                         {"kvm": "built in", "kvm_intel": "absent", "kvm_amd": "absent", "kvm_pvm": "built in"},
                         "not exposed by the hypervisor", "nested", None),
}


def test_every_recording_is_in_the_table() -> None:
    assert sorted(p.name for p in HOSTS.iterdir() if p.is_dir()) == sorted(EXPECTED)
    assert len(EXPECTED) >= 30


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_host(name: str) -> None:
    e = EXPECTED[name]
    report = host.inspect(HOSTS / name, user=ROOT)
    assert (report.platform.virtual, report.platform.hypervisor) == (e.virtual, e.hypervisor)
    assert report.cpu.arch == e.arch
    if e.flags is None:
        assert not report.cpu.flags_known and not report.cpu.flags
    else:
        assert report.cpu.flags_known and e.flags <= report.cpu.flags
    assert not e.no_flags & report.cpu.flags
    assert {m.name: m.state for m in report.kernel.kvm_modules} == e.modules
    assert report.verdict.virtualization.state == e.vt
    assert report.verdict.kind == e.kind
    assert report.verdict.label == host.VERDICT_LABELS[e.kind]
    assert (report.verdict.fix is None) if e.fix is None else (e.fix in report.verdict.fix), report.verdict.fix
    assert report.platform.detail == e.detail
    json.dumps(report.to_dict())  # the whole report is JSON-serialisable


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if (e.model, e.provider) != (None, None)))
def test_recorded_model_and_provider(name: str) -> None:
    """Where the source names the CPU model or the cloud provider, the report names the same."""
    e, report = EXPECTED[name], host.inspect(HOSTS / name, user=ROOT)
    assert (report.cpu.model_name if e.model is not None else None) == e.model
    assert (report.platform.provider if e.provider is not None else None) == e.provider


@dataclass(frozen=True)
class Rule:
    """What a fix must (not) say wherever the evidence shows ``when``."""

    name: str
    when: Callable[[host.HostReport], bool]
    holds: Callable[[host.HostReport, str], bool]


def _loaded(r: host.HostReport) -> set[str]:
    return {m.name for m in r.kernel.kvm_modules if m.present} & {"kvm_intel", "kvm_amd"}


RULES = [
    Rule("no modprobe of a loaded module", lambda r: bool(_loaded(r)),
         lambda r, fix: not any(f"modprobe {m}" in fix for m in _loaded(r))),
    Rule("no kvm group known: the fix makes one",
         lambda r: "usermod -aG kvm" in (r.verdict.fix or "") and r.kvm.kvm_group_exists is not True
         and r.kvm.group != "kvm", lambda r, fix: "groupadd" in fix),
    Rule("not in the CPU: no firmware advice", lambda r: r.verdict.virtualization.state == "not in this CPU",
         lambda r, fix: "firmware" not in fix and "BIOS" not in fix),
    Rule("disabled by firmware: the fix says so", lambda r: r.verdict.virtualization.state == "disabled by firmware",
         lambda r, fix: "firmware" in fix),
    Rule("a VM's firmware setup cannot give it VT-x", lambda r: bool(r.platform.virtual),
         lambda r, fix: "BIOS" not in fix),
    Rule("bare metal: nothing nested", lambda r: r.platform.virtual is False, lambda r, fix: "nested" not in fix),
    Rule("Arm: no x86 advice", lambda r: r.cpu.is_arm,
         lambda r, fix: not any(word in fix for word in ("VT-x", "kvm_intel", "kvm_amd", "BIOS", "rdmsr"))),
    Rule("usable: no fix", lambda r: r.verdict.usable, lambda r, fix: r.verdict.fix is None),
    Rule("a named hypervisor is not 'not identified'",
         lambda r: bool(r.platform.virtual) and r.platform.hypervisor != host.UNKNOWN_HYPERVISOR,
         lambda r, fix: "was not identified" not in fix),
    Rule("a hypervisor is never 'none'", lambda r: True, lambda r, fix: r.platform.hypervisor != "none"),
]


#: Root, and a student in no group: the fixes differ (a student's may add them to the kvm group).
USERS = {"root": ROOT, "student": host.User(1000, frozenset({1000}))}


@pytest.mark.parametrize("user", sorted(USERS))
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_fix_contradicts_the_evidence(name: str, user: str) -> None:
    report = host.inspect(HOSTS / name, user=USERS[user])
    broken = [rule.name for rule in RULES if rule.when(report) and not rule.holds(report, report.verdict.fix or "")]
    assert not broken, report.verdict.fix


def test_every_rule_meets_a_recording() -> None:
    """A rule whose evidence no recording shows would check nothing: each applies to some host here."""
    reports = [host.inspect(HOSTS / name, user=user) for name in sorted(EXPECTED) for user in USERS.values()]
    assert [rule.name for rule in RULES if not any(rule.when(r) for r in reports)] == []


@pytest.mark.parametrize("name", ["parallels-guest", "nutanix-ahv-guest", "aws-m6g-metal"])
def test_which_evidence_won_is_said(name: str) -> None:
    """DMI names the product; the CPU or kernel decides VM vs metal; the winner is named in the report."""
    platform = host.inspect(HOSTS / name, user=ROOT).platform
    assert platform.decided_by and platform.decided_by in platform.evidence


def _cpu_with_dmi(tmp_path, cpu_of: str, **dmi: str):
    """A recording with another host's /proc/cpuinfo and the given DMI strings."""
    tree = tmp_path / "h"
    (tree / "proc").mkdir(parents=True)
    (tree / "proc/cpuinfo").write_text((HOSTS / cpu_of / "proc/cpuinfo").read_text())
    (tree / "sys/class/dmi/id").mkdir(parents=True)
    for name, value in dmi.items():
        (tree / "sys/class/dmi/id" / name).write_text(value + "\n")
    return host.inspect(tree, user=ROOT).platform


def test_cpu_beats_a_metal_product_name(tmp_path) -> None:
    """A '*.metal' DMI name with the CPU's hypervisor bit set: the CPU wins, and the report says why."""
    platform = _cpu_with_dmi(tmp_path, "kvm-guest-no-nested", sys_vendor="Amazon EC2", product_name="c5.metal")
    assert platform.virtual is True and "hypervisor' flag" in platform.decided_by
    assert len(platform.conflicts) == 1 and "c5.metal" in platform.conflicts[0] and "outranks" in platform.conflicts[0]


def test_a_hidden_hypervisor_bit_loses_to_a_vm_product_name(tmp_path) -> None:
    """No hypervisor flag, but DMI says VMware: a hypervisor can hide the bit, firmware strings say VM."""
    platform = _cpu_with_dmi(tmp_path, "intel-xeon-e5620-westmere", product_name="VMware Virtual Platform")
    assert (platform.virtual, platform.hypervisor) == (True, "VMware")
    assert "can hide it" in platform.conflicts[0]


def test_vmx_flags_line_of_a_real_host() -> None:
    cpu = host.inspect(HOSTS / "intel-i5-6500-skylake", user=ROOT).cpu
    assert {"ept_1gb", "preemption_timer"} <= cpu.vmx_flags


def test_arm_cpu_names() -> None:
    src = host.RecordedSource(HOSTS / "rpi4-arm64")
    cpu = host.cpu_info(src)
    assert (cpu.vendor, cpu.model_name, cpu.arm_implementer, cpu.arm_part, cpu.logical_cpus) == (
        "Arm", "Arm Cortex-A72", 0x41, 0xD08, 4)


def test_arm_outlook_names_the_x86_only_notebook() -> None:
    report = host.inspect(HOSTS / "rpi4-arm64", user=ROOT)
    outlook = {o.notebook: o for o in host.notebook_outlook(report)}
    assert outlook["03 KVM"].runs == "partly" and "x86-64 host" in outlook["03 KVM"].detail
    assert "TCG" in outlook["04 QEMU"].detail and outlook["04 QEMU"].runs == "live"
