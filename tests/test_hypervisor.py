"""labkit.lessons.hypervisor and the host views: catalogue, stack per host kind, the planner."""

from __future__ import annotations

import pytest

from conftest import HOSTS
from labkit import host
from labkit.errors import InvalidOptionError
from labkit.lessons import hypervisor
from labkit.widgets.host import ApartmentPlanner, host_card, stack_view

ROOT = host.User(0, frozenset({0}))


@pytest.mark.parametrize("name, expected", [
    ("intel-vtx-baremetal", ["hardware", "this Linux kernel", "KVM hypervisor (in this kernel)", "your guests"]),
    ("pvm-nested", ["hardware (out of sight)", "outer hypervisor", "this Linux kernel",
                    "KVM hypervisor (in this kernel)", "your guests"]),
    ("kvm-guest-no-nested", ["hardware (out of sight)", "outer hypervisor", "this Linux kernel",
                             "QEMU's TCG emulator (a Type 2 hypervisor)"]),
    ("no-dev-kvm", ["hardware", "this Linux kernel", "QEMU's TCG emulator (a Type 2 hypervisor)"]),
])
def test_stack_per_host(name: str, expected: list[str]) -> None:
    layers = hypervisor.stack(host.inspect(HOSTS / name, user=ROOT))
    assert [l.name for l in layers] == expected
    assert all(l.evidence for l in layers)


def test_stack_explains_software_kvm() -> None:
    layers = {l.name: l for l in hypervisor.stack(host.inspect(HOSTS / "pvm-nested", user=ROOT))}
    assert "no VT-x/AMD-V" in layers["KVM hypervisor (in this kernel)"].detail
    assert layers["your guests"].detail == "nested: a VM inside a VM"


def test_kvm_stack_is_the_same_layer_model_with_live_evidence() -> None:
    report = host.inspect(HOSTS / "pvm-nested", user=ROOT)
    layers = hypervisor.kvm_stack_layers(report, "9.0.0", "7.2.19", "qemu:///system", "qemu",
                                  ["/usr/bin/qemu-system-x86_64", "-name", "guest=x", "-accel", "tcg"])
    assert [l.name for l in layers] == ["hardware", "Linux kernel (host OS)", "KVM module", "QEMU", "libvirt"]
    assert all(isinstance(l, hypervisor.Layer) and l.evidence and l.role and l.you_ran for l in layers)
    assert layers[3].here == "QEMU 7.2.19: libvirt ran qemu-system-x86_64 -accel tcg"
    assert layers[4].detail == "libvirt 9.0.0 on qemu:///system: domain type 'qemu'"
    assert "(inside a VM: nested)" in layers[0].detail and report.verdict.label in layers[2].detail


def test_plan_overcommit() -> None:
    p = hypervisor.plan(4, 8192, [hypervisor.GuestSpec(f"g{i}", 2, 4096) for i in range(3)])
    assert (p.vcpus, p.memory_mib) == (6, 12288)
    assert p.cpu_overcommit == 1.5 and p.memory_overcommit == 1.5
    assert len(p.warnings) == 2
    fits = hypervisor.plan(4, 8192, [hypervisor.GuestSpec("g", 2, 1024)])
    assert fits.warnings == ()


@pytest.mark.parametrize("vcpus, mem, match", [(0, 512, "at least 1 vCPU"), (1, 8, "16 MiB")])
def test_plan_rejects_bad_guests(vcpus: int, mem: int, match: str) -> None:
    with pytest.raises(InvalidOptionError, match=match):
        hypervisor.plan(2, 1024, [hypervisor.GuestSpec("bad", vcpus, mem)])


def test_planner_widget_follows_its_sliders() -> None:
    planner = ApartmentPlanner(2, 4096, guests=1, vcpus=1, memory_mib=1024)
    assert planner.plan.cpu_overcommit == 0.5 and "labkit-warnings'></ul>" in planner.drawing.value
    planner.guests.value = 4
    assert planner.plan.vcpus == 4 and "CPU overcommitted 2.0x" in planner.drawing.value


def test_host_views_render() -> None:
    report = host.inspect(HOSTS / "kvm-guest-no-nested", user=ROOT)
    card = host_card(report).value
    assert "no KVM" in card and "nested virtualization" in card
    assert "outer hypervisor" in stack_view(report).value
