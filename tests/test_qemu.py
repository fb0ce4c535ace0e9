"""labkit.qemu: options, the accelerator choice, real TCG boots of the tiny guest, QMP and cleanup."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from conftest import HOSTS
from labkit import host, images, qemu, runtime
from labkit.errors import InvalidOptionError, KvmUnavailableError, MissingToolError
from labkit.lessons import payload

ROOT = host.User(0, frozenset({0}))


def leftovers(name: str = "") -> list[psutil.Process]:
    """QEMU processes this test process started (their -name carries our pid) that are still alive."""
    mark = f"{runtime.prefix()}{name}"
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(mark in arg and f"-{os.getpid()}-" in arg for arg in cmdline) and proc.is_running():
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


@pytest.fixture(scope="module")
def guest() -> images.GuestImage:
    return images.tiny_guest(fetch=False, progress=False)


@pytest.fixture(scope="module")
def booted(guest: images.GuestImage) -> qemu.BootResult:
    """One real TCG boot, shared by the tests that read it (a boot takes ~1.5-2 s here)."""
    return asyncio.run(qemu.boot(guest, accel="tcg", vcpus=2, memory_mib=160,
                                 command="echo hello from the guest; cat /proc/cpuinfo | grep -c ^processor"))


# --------------------------------------------------------------------------- the accelerator


@pytest.mark.parametrize("name, linux, payload_accel, said", [
    ("intel-vtx-baremetal", "kvm", "kvm", ()),
    ("amd-svm-baremetal", "kvm", "kvm", ()),
    ("pvm-nested", "tcg", "kvm", ("VT-x/AMD-V", "TCG")),  # why KVM is not used for Linux here
    ("no-dev-kvm", "tcg", "tcg", ()),
])
def test_auto_accel_per_host(name: str, linux: str, payload_accel: str, said: tuple[str, ...]) -> None:
    report = host.inspect(HOSTS / name, user=ROOT)
    choice = qemu.choose_accel("auto", "linux", report)
    assert choice.name == linux and choice.requested == "auto"
    assert qemu.choose_accel("auto", "payload", report).name == payload_accel
    assert [word for word in said if word not in choice.reason] == []


def test_kvm_for_linux_refused_where_it_cannot_boot() -> None:
    with pytest.raises(qemu.KvmCannotBootLinuxError) as err:
        qemu.choose_accel("kvm", "linux", host.inspect(HOSTS / "pvm-nested", user=ROOT))
    assert "tcg" in err.value.fix
    with pytest.raises(KvmUnavailableError, match="no KVM"):
        qemu.choose_accel("kvm", "linux", host.inspect(HOSTS / "no-dev-kvm", user=ROOT))
    with pytest.raises(InvalidOptionError):
        qemu.choose_accel("fast")  # type: ignore[arg-type]
    assert qemu.choose_accel("tcg").name == "tcg"


def test_kvm_not_openable_by_a_student_falls_back() -> None:
    report = host.inspect(HOSTS / "intel-vtx-baremetal", user=host.User(1000, frozenset({1000})))
    choice = qemu.choose_accel("auto", "linux", report)
    assert choice.name == "tcg" and "no usable KVM" in choice.reason


def test_host_tsc_frequency() -> None:
    """On a host with an invariant TSC and no frequency scaling (these machines) it is always known."""
    if ("constant_tsc" not in host.cpu_info(host.LiveSource()).flags
            or Path("/sys/devices/system/cpu/cpu0/cpufreq").exists()):
        pytest.skip("this host's TSC varies or its CPU scales its frequency: test_host.py covers such hosts "
                    "from recordings")
    tsc = host.tsc_frequency()
    assert tsc is not None and 300_000 <= tsc.khz <= 10_000_000 and tsc.source


def test_no_tsc_frequency_without_constant_tsc(monkeypatch: pytest.MonkeyPatch) -> None:
    real = host.cpu_info(host.LiveSource())
    monkeypatch.setattr(host, "cpu_info", lambda src: host.CpuInfo(
        real.vendor, real.model_name, real.logical_cpus, real.physical_cores, real.flags - {"constant_tsc"}))
    assert host.tsc_frequency() is None


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("change, message", [
    (dict(memory_mib=0), "memory_mib=0"),
    (dict(memory_mib=10**9), "between 16"),
    (dict(memory_mib="128"), "whole number"),
    (dict(vcpus=0), "vcpus=0"),
    (dict(vcpus=65), "vcpus=65"),
    (dict(machine="pdp11"), "no machine type"),
    (dict(cpu="Pentium-9000"), "cannot emulate"),
    (dict(cpu="host"), "-cpu host"),
    (dict(accel="auto"), "choose_accel"),
    (dict(initrd=Path("/etc/hostname")), "needs a kernel"),
    (dict(append="quiet"), "needs a kernel"),
    (dict(tb_size_mib=0), "TCG only"),
])
def test_bad_options(change: dict, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=re.escape(message)):
        qemu.MachineConfig(**change).validate()


def test_qemus_lists_are_asked_once_per_binary_and_again_when_it_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``-machine help`` is a QEMU start (2.3 s inside the emulated AMD-V machine): each process asked it before
    every validation; now the list is kept per binary in the user's cache, and a changed binary is asked anew."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    asked = tmp_path / "asked"
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text(f"#!/bin/sh\necho \"$1\" >> {asked}\n"
                    "printf 'Supported machines are:\\npc  Standard PC\\nq35  Standard PC (Q35)\\n'\n")
    fake.chmod(0o755)

    def machines() -> frozenset[str]:
        """What a new process (nothing kept in its memory) finds."""
        proc = subprocess.run([sys.executable, "-c", "import sys; from labkit.qemu import config; "
                               "print(*sorted(config.machine_types(sys.argv[1])))", str(fake)],
                              capture_output=True, text=True, check=True)
        return frozenset(proc.stdout.split())

    assert machines() == machines() == {"pc", "q35"}
    assert asked.read_text().split() == ["-machine"]  # once: the second process read the list kept
    kept = tmp_path / "cache" / "labkit" / "qemu"
    assert {oct(p.stat().st_mode & 0o777) for p in (kept, kept.parent)} == {"0o700"}  # the user's alone
    fake.write_text(fake.read_text().replace("q35", "microvm"))  # a new QEMU (another size, another mtime)
    assert machines() == {"pc", "microvm"} and asked.read_text().split() == ["-machine", "-machine"]
    for kept_list in kept.glob("help-*.json"):
        kept_list.write_text("[]")  # emptied (by hand, a full disk): asked again, not "QEMU has no machines"
    assert machines() == {"pc", "microvm"} and len(asked.read_text().split()) == 3
    fake.write_text(f"#!/bin/sh\necho \"$1\" >> {asked}\nexit 1\n")  # lists nothing: asked each time, not kept
    assert machines() == machines() == frozenset()
    assert len(asked.read_text().split()) == 5 and len(list(kept.glob("help-*.json"))) == 2


def test_cpu_max_under_nested_kvm_refused() -> None:
    config = qemu.MachineConfig(accel="kvm", cpu="max")
    with pytest.raises(InvalidOptionError, match="max"):
        config.validate(host.inspect(HOSTS / "pvm-nested", user=ROOT))
    config.validate(host.inspect(HOSTS / "intel-vtx-baremetal", user=ROOT))  # fine with VT-x


def test_missing_kernel_file(tmp_path: Path) -> None:
    with pytest.raises(qemu.MissingKernelError, match="kernel file"):
        qemu.MachineConfig(kernel=tmp_path / "vmlinuz").validate()


def test_missing_qemu_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, guest: images.GuestImage) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="qemu-system-x86_64 is not installed") as err:
        asyncio.run(qemu.boot(guest, accel="tcg"))
    assert "apt-get install qemu-system-x86" in err.value.fix


def test_command_line_has_no_shell_and_no_defaults() -> None:
    config = qemu.MachineConfig(cpu="qemu64", devices=(qemu.DEBUG_EXIT_DEVICE,), memory_mib=64, vcpus=2)
    argv = config.argv("labkit-x-test", 5, 6)
    assert argv[0].endswith("qemu-system-x86_64") and "-nodefaults" in argv and "-no-reboot" in argv
    assert argv[argv.index("-cpu") + 1] == "qemu64" and argv[argv.index("-smp") + 1] == "2"
    assert "socket,id=console,fd=5" in argv and "socket,id=qmp,fd=6" in argv
    assert argv[argv.index("-device") + 1] == "isa-debug-exit,iobase=0xf4,iosize=0x04"


@pytest.mark.parametrize("tsc", [host.TscFrequency(2_500_000, "test"), None], ids=["tsc-known", "tsc-unknown"])
def test_linux_config_derives_from_the_host(guest: images.GuestImage, tsc: host.TscFrequency | None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "tsc_frequency", lambda: tsc)
    assert guest.vmlinux, "lz4 is installed by setup: the Debian cloud kernel decompresses here"
    tcg = qemu.AccelChoice("tcg", "tcg", "test")
    config, notes = qemu.linux_config(guest, tcg)
    if tsc is None:  # microvm's guest may not calibrate its clock under TCG: the classic PC
        assert "tsc_early_khz" not in config.append and config.machine == "pc"
        assert any("TSC frequency is unknown" in note for note in notes)
    else:  # one vCPU (the default): microvm without ACPI, powered off by a reset
        assert f"tsc_early_khz={tsc.khz}" in config.append
        assert config.machine == qemu.MICROVM_WITHOUT_ACPI and config.kernel == guest.vmlinux
        assert "reboot=t" in config.append.split() and any("without ACPI" in note for note in notes)
        two, _ = qemu.linux_config(guest, tcg, vcpus=2)  # more vCPUs need ACPI's table of CPUs
        assert two.machine == "microvm" and "reboot=t" not in two.append.split()
        asked, _ = qemu.linux_config(guest, tcg, machine="microvm")  # a machine the caller names is kept
        assert asked.machine == "microvm" and "reboot=t" not in asked.append.split()
    assert config.append.startswith(images.BASE_CMDLINE) and notes
    plain, _ = qemu.linux_config(guest, tcg, machine="pc", host_tuning=False)
    assert plain.machine == "pc" and "tsc_early_khz" not in plain.append
    kvm, kvm_notes = qemu.linux_config(guest, qemu.AccelChoice("kvm", "auto", "test"))
    assert "tsc_early_khz" not in kvm.append  # KVM guests have kvm-clock
    assert kvm.machine == qemu.MICROVM_WITH_RTC and "reboot=t" not in kvm.append.split()  # its RTC: see the note
    assert any("rtc=on" in note for note in kvm_notes)
    named, _ = qemu.linux_config(guest, qemu.AccelChoice("kvm", "kvm", "test"), machine="microvm")
    assert named.machine == "microvm"  # a machine the caller names is kept


def test_parse_registers() -> None:
    text = ("RAX=0000000000000000 RBX=0000000000000001 RCX=0000000000000002 RDX=0000000000000003\n"
            "RIP=ffffffff81e6b3bf RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n"
            "ES =0000 0000000000000000 00000000 00000000\nCR0=80050033 CR2=00007f CR3=0000000002e0a000\n")
    regs = qemu.parse_registers(text)
    assert regs["RIP"] == 0xFFFFFFFF81E6B3BF and regs["CR0"] == 0x80050033 and regs["CPL"] == 0
    assert regs["RBX"] == 1 and regs["ES"] == 0


# --------------------------------------------------------------------------- real boots (TCG)


def test_boot_reports_what_the_guest_saw(booted: qemu.BootResult, guest: images.GuestImage) -> None:
    report = booted.report
    assert report.kernel_release == guest.kernel_release
    assert report.cpus == 2 and 100 <= report.memory_mib <= 160
    assert report.hypervisor == "QEMU TCG" and report.hypervisor_flag
    assert booted.accel.name == "tcg" and booted.exit_code == 0
    assert report.command_output.split() == ["hello", "from", "the", "guest", "2"] and report.command_status == 0
    assert report.cmdline.startswith(images.BASE_CMDLINE)


def test_boot_timings_are_ordered(booted: qemu.BootResult) -> None:
    t = booted.times
    assert t.first_output_s is not None and t.poweroff_s is not None and t.qemu_start_s is not None
    assert 0 < t.qemu_start_s < t.first_output_s <= t.userspace_s <= t.poweroff_s
    assert 0 < t.guest_uptime_s and t.before_kernel_s >= 0
    assert t.early_kernel_s == pytest.approx(t.before_kernel_s - t.qemu_start_s)
    assert t.init_s is not None and 0 <= t.init_s < t.userspace_s
    assert not leftovers()


def test_boot_accounts_qemus_cpu_time_and_peak_memory(booted: qemu.BootResult) -> None:
    """wait4's account of the QEMU that ran the boot: it ran the guest for a while and held its memory."""
    usage = booted.usage
    assert usage is not None
    assert 0 < usage.cpu_s and 50 < usage.peak_rss_mib < 4096
    assert booted.to_dict()["usage"] == {"cpu_s": usage.cpu_s, "peak_rss_mib": usage.peak_rss_mib}


def test_early_kernel_time_is_unknown_without_qemu_start() -> None:
    times = qemu.BootTimes(0.7, 1.3, 1.35, 0.8)
    assert times.before_kernel_s == pytest.approx(0.5) and times.early_kernel_s is None
    assert dataclasses.replace(times, qemu_start_s=0.1).early_kernel_s == pytest.approx(0.4)


def test_one_vcpu_guest_without_acpi_still_shows_the_lesson_and_powers_off(guest: images.GuestImage) -> None:
    """The fast 1-vCPU guest (microvm without ACPI, noreplace-smp) still sees its CPU, memory and hypervisor,
    and its reset ends QEMU (-no-reboot) as a power-off would; the 2-vCPU guest powers off through ACPI."""
    result = asyncio.run(qemu.boot(guest, accel="tcg", vcpus=1, memory_mib=128))
    report = result.report
    assert {"noreplace-smp", "reboot=t"} <= set(report.cmdline.split())
    assert result.config.machine == qemu.MICROVM_WITHOUT_ACPI
    assert report.cpus == 1 and 64 <= report.memory_mib <= 128
    assert report.hypervisor == "QEMU TCG" and report.hypervisor_flag
    assert result.exit_code == 0 and result.times.poweroff_s is not None
    assert not any(note.startswith("the guest announced its power-off") for note in result.notes)
    assert "reboot: Restarting system" in result.console and not leftovers()


def test_two_vcpu_guest_powers_off_through_acpi(booted: qemu.BootResult) -> None:
    assert booted.config.machine != qemu.MICROVM_WITHOUT_ACPI and "reboot=t" not in booted.report.cmdline.split()
    assert "reboot: Power down" in booted.console and booted.exit_code == 0


def test_summarize_boots_per_accelerator(booted: qemu.BootResult) -> None:
    """Medians, minima and maxima per accelerator, in the order they came; unmeasured workloads are None."""
    def boot_at(accel: str, userspace_s: float, workload_s: float | None = None) -> qemu.BootResult:
        output = f"LABKIT-WORKLOAD 10.00 {10 + workload_s:.2f}\n" if workload_s is not None else None
        return dataclasses.replace(booted, accel=dataclasses.replace(booted.accel, name=accel),
                                   times=dataclasses.replace(booted.times, userspace_s=userspace_s),
                                   report=dataclasses.replace(booted.report, command_output=output))

    summary = qemu.summarize_boots([boot_at("tcg", 3.0, 0.5), boot_at("kvm", 1.0), boot_at("tcg", 1.0, 0.75),
                                    boot_at("tcg", 2.0, 0.25)])
    assert list(summary) == ["tcg", "kvm"]
    assert summary["tcg"].boots == 3 and summary["tcg"].userspace_s == qemu.Spread(2.0, 1.0, 3.0)
    assert summary["tcg"].workload_s == qemu.Spread(0.5, 0.25, 0.75)
    assert summary["kvm"].userspace_s == qemu.Spread(1.0, 1.0, 1.0) and summary["kvm"].workload_s is None
    assert summary["kvm"].guest_uptime_s == qemu.Spread(booted.times.guest_uptime_s, booted.times.guest_uptime_s,
                                                         booted.times.guest_uptime_s)


def test_boot_result_dict(booted: qemu.BootResult) -> None:
    data = booted.to_dict()
    assert data["report"]["hypervisor"] == "QEMU TCG" and data["times"]["userspace_s"] > 0
    assert data["command_line"][0].endswith("qemu-system-x86_64")


@pytest.mark.parametrize("machine", ["pc", "q35"])
def test_bzimage_boots_on_the_pc_machines_libvirt_uses(guest: images.GuestImage, machine: str) -> None:
    """libvirt boots the same kernel/initrd/cmdline with -M pc or q35 through SeaBIOS."""
    plain = dataclasses.replace(guest, vmlinux=None)
    result = asyncio.run(qemu.boot(plain, accel="tcg", machine=machine))
    assert result.config.machine == machine and result.config.kernel == guest.kernel
    assert result.report.kernel_release == guest.kernel_release and result.exit_code == 0


def test_guest_that_never_boots_times_out_cleanly(guest: images.GuestImage) -> None:
    with pytest.raises(qemu.GuestTimeoutError) as err:
        asyncio.run(qemu.boot(guest, accel="tcg", timeout=0.3))
    assert "within 0.3 s" in str(err.value) and "Console tail" in str(err.value)
    assert not leftovers("tiny-")


def test_guest_that_panics_is_a_clean_error(guest: images.GuestImage, tmp_path: Path) -> None:
    broken = tmp_path / "broken.cpio.gz"
    broken.write_bytes(b"\x1f\x8b this is no initramfs")
    image = images.GuestImage(guest.kernel, broken, guest.cmdline, guest.kernel_release, "test", guest.vmlinux)
    with pytest.raises(qemu.GuestStoppedError) as err:
        asyncio.run(qemu.boot(image, accel="tcg"))
    assert "guest's kernel panicked" in str(err.value) and "Initramfs unpacking failed" in str(err.value)
    assert "report a bug" not in str(err.value) and "labkit image build --force" in err.value.fix
    assert not leftovers("tiny-")


def test_a_command_cannot_fake_the_end_of_its_output(guest: images.GuestImage) -> None:
    """The markers carry a per-boot nonce the command cannot read (not in /proc/cmdline, deleted from /labkit)."""
    forged = (f"echo {images.COMMAND_END} 0; echo {images.REPORT_MARKER}{{}}; echo more; "
              "grep -c labkit.nonce /proc/cmdline; ls /labkit; exit 3")
    result = asyncio.run(qemu.boot(guest, accel="tcg", command=forged))
    assert result.report.command_status == 3
    assert result.report.command_output.splitlines() == [f"{images.COMMAND_END} 0", images.REPORT_MARKER + "{}",
                                                         "more", "0", "command"]


def test_launch_failure_carries_command_line_and_output() -> None:
    config = qemu.MachineConfig(extra_args=("-device", "no-such-device"))
    with pytest.raises(qemu.LaunchError) as err:
        asyncio.run(qemu.QemuMachine(config).start())
    assert "no-such-device" in err.value.output and "-nodefaults" in err.value.command_line
    assert "QEMU said" in str(err.value)
    assert not leftovers()


@dataclasses.dataclass(frozen=True)
class GoneBinaryConfig(qemu.MachineConfig):
    """Options whose command line names a program that is not there (it vanished after validation)."""

    def argv(self, name: str, console_fd: int, qmp_fd: int) -> list[str]:
        return ["/nonexistent/qemu-system-x86_64", *super().argv(name, console_fd, qmp_fd)[1:]]


def test_a_qemu_that_cannot_be_executed_is_a_launch_error() -> None:
    """Popen's own failure is a LaunchError too, and leaves no scratch dir and no open socket behind."""
    fds, dirs = set(os.listdir("/proc/self/fd")), set(runtime.run_dir().glob(f"qemu-{os.getpid()}-*"))
    with pytest.raises(qemu.LaunchError, match="QEMU could not be started .FileNotFoundError") as err:
        asyncio.run(qemu.QemuMachine(GoneBinaryConfig(), name="gone").start())
    assert err.value.command_line[0] == "/nonexistent/qemu-system-x86_64" and "-nodefaults" in err.value.command_line
    assert set(runtime.run_dir().glob(f"qemu-{os.getpid()}-*")) == dirs
    assert set(os.listdir("/proc/self/fd")) == fds


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_no_qemu_survives_an_error_mid_boot(guest: images.GuestImage, error: type[BaseException]) -> None:
    config, _ = qemu.linux_config(guest, qemu.choose_accel("tcg"))
    seen = {}

    async def boot_and_fail() -> None:
        async with qemu.QemuMachine(config, name="midboot") as vm:
            seen["pid"] = vm.pid
            assert (await vm.qmp("query-status"))["status"] == "running"  # QEMU runs the guest: mid-boot
            raise error("the test stops here")

    with pytest.raises(error):
        asyncio.run(boot_and_fail())
    assert not psutil.pid_exists(seen["pid"]) or psutil.Process(seen["pid"]).status() == psutil.STATUS_ZOMBIE
    assert not leftovers("midboot")


def test_interpreter_exit_kills_an_abandoned_machine(tmp_path: Path) -> None:
    """A notebook kernel shut down with a guest still running: the exit hook kills QEMU."""
    script = textwrap.dedent("""
        import asyncio
        from labkit import qemu
        from labkit.lessons import payload
        async def main():
            p = payload.build(iterations=10**15)  # runs for days
            vm = await qemu.QemuMachine(qemu.MachineConfig(bios=p.path, memory_mib=16), name="abandoned").start()
            print(vm.pid, flush=True)
        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout.split()[0])
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


# --------------------------------------------------------------------------- QMP


def test_qmp_status_cpus_kvm_registers_stop_cont() -> None:
    async def scenario() -> dict:
        p = payload.build(iterations=10**15)
        config = qemu.MachineConfig(bios=p.path, memory_mib=16, vcpus=2, devices=(qemu.DEBUG_EXIT_DEVICE,))
        async with qemu.QemuMachine(config, name="qmp") as vm:
            await vm.wait_for("loop start", timeout=20)
            out = {"status": (await vm.qmp("query-status"))["status"],
                   "cpus": await vm.qmp("query-cpus-fast"),
                   "kvm": await vm.qmp("query-kvm")}
            await vm.qmp("stop")
            out["stopped"] = (await vm.qmp("query-status"))["status"]
            out["registers"] = qemu.parse_registers(await vm.hmp("info registers"))
            await vm.qmp("cont")
            out["resumed"] = (await vm.qmp("query-status"))["status"]
        out["running_after"] = vm.running
        return out

    out = asyncio.run(scenario())
    assert out["status"] == "running" and len(out["cpus"]) == 2
    assert out["kvm"]["enabled"] is False  # TCG
    assert out["stopped"] == "paused" and out["resumed"] == "running"
    assert payload.ORIGIN <= out["registers"]["RIP"] < payload.ORIGIN + 0x10000  # inside the payload
    assert out["registers"]["CPL"] == 3  # the loop runs in ring 3
    assert out["running_after"] is False and not leftovers("qmp")


def test_qmp_on_a_stopped_machine_is_an_error() -> None:
    vm = qemu.QemuMachine(qemu.MachineConfig())
    with pytest.raises(qemu.QemuError, match="not running"):
        asyncio.run(vm.qmp("query-status"))


def test_bad_machine_name() -> None:
    with pytest.raises(InvalidOptionError, match="machine name"):
        qemu.QemuMachine(qemu.MachineConfig(), name="Bad Name")


# --------------------------------------------------------------------------- CLI


def _labkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=120)


def test_cli_boot_prints_report_and_timings() -> None:
    proc = _labkit("boot", "--vcpus", "1", "--memory", "128")
    assert proc.returncode == 0, proc.stderr
    assert "guest      Linux " in proc.stdout and "userspace" in proc.stdout
    assert re.search(r"CPUID says: (QEMU TCG|KVM)", proc.stdout)


def test_cli_boot_bad_options() -> None:
    proc = _labkit("boot", "--memory", "0")
    assert proc.returncode == 2 and "memory_mib=0" in proc.stderr and "fix:" in proc.stderr


def test_cli_boot_refuses_kvm_where_linux_cannot_boot_under_it() -> None:
    if qemu.choose_accel("auto", "linux").name != "tcg" or not host.inspect().verdict.usable:
        pytest.skip("this host boots Linux under KVM, or has no usable KVM: there is no refusal to see")
    proc = _labkit("boot", "--accel", "kvm")  # these hosts: KVM works but cannot boot Linux
    assert proc.returncode == 2 and "cannot boot a Linux guest" in proc.stderr


def test_cpu_count_exercise_fails_the_template_and_a_typed_number() -> None:
    """Notebook 04's checker boots the learner's command on one vCPU, then with their vCPUs (one real boot here:
    a typed-in number fails on the first; the reference solution passes both in the notebook's reference run)."""
    from labkit.exercises import qemu as exercise

    want = exercise.target()
    untouched = exercise.cpu_count(None, None)  # the template: nothing booted
    assert not untouched.solved and "exercise_vcpus" in untouched.message and untouched.hints
    assert not exercise.cpu_count(want + 1, "nproc").solved  # someone else's target
    typed = exercise.cpu_count(want, f"echo {want}")  # it would fit the learner's guest; wrong on one vCPU
    assert not typed.solved and "one-vCPU guest" in typed.message
