"""Booting and timing the tiny guest under QEMU: the fast options, one boot, and boots compared."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from labkit import host, images, runtime
from labkit.errors import GuestPanicError, GuestStoppedError, GuestTimeoutError, InvalidOptionError, from_os_error
from labkit.i18n import Phrase
from labkit.i18n import noop as N_
from labkit.qemu.accel import Accel, AccelChoice, choose_accel
from labkit.qemu.config import MachineConfig
from labkit.qemu.machine import QemuMachine, QemuUsage


@dataclass(frozen=True)
class BootTimes:
    """When each phase of a boot was reached, in seconds since QEMU was launched.

    ``guest_uptime_s`` is the guest's own clock at ``/init``.  The rest of
    ``userspace_s`` (:attr:`before_kernel_s`) went to QEMU's start and loading
    the kernel (:attr:`qemu_start_s`, QEMU is started with its vCPUs stopped)
    and to the kernel's earliest work, which its clock misses
    (:attr:`early_kernel_s`): under TCG the kernel rewrites its own code
    (alternatives, retpolines, returns, ftrace) with interrupts off while its
    clock still counts timer ticks, and calibrates its local APIC timer.
    """

    first_output_s: float | None  # launch → first console byte
    userspace_s: float  # launch → the guest's /init report arrived
    poweroff_s: float | None  # launch → QEMU exited after the guest powered off
    guest_uptime_s: float  # the guest's clock at /init
    qemu_start_s: float | None = None  # launch → vCPUs started: QEMU initialised, kernel and initramfs loaded
    init_s: float | None = None  # the guest's clock from /init's start to its report (None: an older /init)

    @property
    def before_kernel_s(self) -> float:
        """Wall time the guest's clock did not see: QEMU, firmware, loading, the kernel's earliest steps."""
        return max(0.0, self.userspace_s - self.guest_uptime_s)

    @property
    def early_kernel_s(self) -> float | None:
        """The part of :attr:`before_kernel_s` after QEMU started the vCPUs: firmware and early kernel work."""
        return None if self.qemu_start_s is None else max(0.0, self.before_kernel_s - self.qemu_start_s)


@dataclass(frozen=True)
class BootResult:
    """A finished boot of the tiny guest: what it saw, how long it took, how it was run."""

    report: images.GuestReport
    times: BootTimes
    accel: AccelChoice
    config: MachineConfig
    command_line: tuple[str, ...]
    console: str
    exit_code: int | None
    notes: tuple[str, ...] = field(default=())  # choices labkit made for speed, and why
    usage: QemuUsage | None = None  # QEMU's CPU time and peak memory over the boot (None: not accounted)

    def to_dict(self) -> dict:
        return {"accel": asdict(self.accel), "machine": self.config.machine, "cpu": self.config.cpu,
                "memory_mib": self.config.memory_mib, "vcpus": self.config.vcpus,
                "times": {**asdict(self.times), "before_kernel_s": self.times.before_kernel_s,
                          "early_kernel_s": self.times.early_kernel_s},
                "usage": asdict(self.usage) if self.usage else None,
                "report": self.report.to_dict(), "notes": list(self.notes),
                "command_line": list(self.command_line), "exit_code": self.exit_code}


#: ``microvm`` with no ACPI tables: no ACPI interpreter and no local APIC in the guest, so a 1-vCPU TCG boot is
#: ~0.13 s shorter (bench/boot.py).  Without ACPI there is no power-off device and no table of CPUs (QEMU 7.2's
#: microvm writes no MP table), so it serves one vCPU, which powers off by a reset (see /init).
MICROVM_WITHOUT_ACPI = "microvm,acpi=off"
#: ``microvm`` with its CMOS RTC, which QEMU 7.2 leaves out under KVM (``rtc=auto``: on only without KVM).  The
#: kernel probes the RTC's ports anyway (no ACPI flag says there is none) and reads 0xff, "update in
#: progress", until its retry loop gives up: ``cmos_init`` took 3.9 s of an L2 boot under KVM inside the
#: emulated AMD-V machine (``initcall_debug``), where every port read is a nested exit; with the RTC, ~0.
MICROVM_WITH_RTC = "microvm,rtc=on"


def linux_config(image: images.GuestImage, accel: AccelChoice, *, machine: str = "auto",
                 cpu: str | None = None, memory_mib: int = 128, vcpus: int = 1,
                 append: str = "", host_tuning: bool = True) -> tuple[MachineConfig, tuple[str, ...]]:
    """Options to boot ``image`` fast on this host, and the reasons (``notes``) for each choice.

    * the uncompressed ``vmlinux`` when the image has one: QEMU enters it at
      its PVH entry point, skipping the firmware's Linux loader and the
      in-guest decompression (a third of a TCG boot);
    * ``machine="auto"``: ``microvm`` (no PCI, no firmware) for a direct boot,
      else ``pc``;
    * under KVM, ``microvm`` with its RTC (:data:`MICROVM_WITH_RTC`);
    * one vCPU under TCG: ``microvm`` without ACPI (:data:`MICROVM_WITHOUT_ACPI`),
      powered off by a reset that ``-no-reboot`` turns into QEMU's exit.  More
      vCPUs need ACPI's table of CPUs (this microvm has no MP table);
    * under TCG, ``tsc_early_khz=<host TSC kHz>`` so the guest need not
      calibrate its clock against an emulated timer (that calibration is slow
      and sometimes fails on microvm).  ``host_tuning=False`` leaves it out.
    """
    notes = []
    kernel = image.vmlinux or image.kernel
    if image.vmlinux:
        notes.append(Phrase(N_("kernel: the uncompressed vmlinux, entered at its PVH entry point "
                               "(no firmware loader, no in-guest decompression)")))
    chosen = machine == "auto"
    if chosen:
        machine = "microvm" if image.vmlinux else "pc"
        notes.append(Phrase(N_("machine: microvm (no PCI bus, no firmware to run)")) if machine == "microvm"
                     else Phrase(N_("machine: {machine} (the classic PC; a bzImage goes through SeaBIOS)"),
                                 machine=machine))
    cmdline = image.cmdline
    if accel.name == "tcg":
        tsc = host.tsc_frequency() if host_tuning else None
        if tsc:
            cmdline += f" tsc_early_khz={tsc.khz}"
            notes.append(Phrase(N_("tsc_early_khz={khz}: the guest's TSC is the host's under TCG "
                                   "(frequency from {source})"), khz=tsc.khz, source=tsc.source))
        elif machine.startswith("microvm"):
            machine = "pc"
            notes.append(Phrase(N_("machine: pc, because this host's TSC frequency is unknown and microvm's guest "
                                   "cannot always calibrate its clock under TCG")))
    if chosen and machine == "microvm" and accel.name == "kvm":
        machine = MICROVM_WITH_RTC
        notes.append(Phrase(N_("machine: microvm with its RTC (rtc=on), which QEMU leaves out under KVM: the guest's "
                               "kernel probes the RTC's ports anyway and waits on them until it gives up")))
    if chosen and machine == "microvm" and vcpus == 1 and accel.name == "tcg":
        machine = MICROVM_WITHOUT_ACPI
        cmdline += " reboot=t"
        notes.append(Phrase(N_("machine: microvm without ACPI, as the guest has one vCPU: its kernel then runs no "
                               "ACPI interpreter and, with no local APIC to use, calibrates no APIC timer (~0.13 s "
                               "less under TCG); it powers off the way QEMU documents for microvm, by resetting "
                               "itself (reboot=t: a triple fault), which -no-reboot turns into QEMU's exit")))
    if append:
        cmdline += " " + append
    config = MachineConfig(accel=accel.name, machine=machine, cpu=cpu, memory_mib=memory_mib, vcpus=vcpus,
                           kernel=kernel, initrd=image.initrd, append=cmdline)
    return config, tuple(notes)




async def boot(image: images.GuestImage | None = None, *, accel: Accel = "auto", machine: str = "auto",
               cpu: str | None = None, memory_mib: int = 128, vcpus: int = 1, command: str | None = None,
               append: str = "", host_tuning: bool = True, timeout: float = 60.0,
               on_output: Callable[[str], None] | None = None, extra_args: tuple[str, ...] = ()) -> BootResult:
    """Boot the tiny guest once: wait for its report, let it power off, return what it saw and the timings.

    ``command`` runs in the guest after its report (output in
    ``result.report.command_output``); ``extra_args`` are more QEMU options
    (a disk, a NIC: :mod:`labkit.qemu.disk`).  The machine never outlives the call.
    A fresh nonce marks the guest's report and command output, so the
    command cannot fake where its output ends (:func:`labkit.images.with_nonce`).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidOptionError(f"timeout={timeout!r}: must be a number of seconds above 0",
                                 "the tiny guest needs ~2-5 s under TCG; the default is 60")
    if image is None:
        image = images.tiny_guest(command=command, fetch=False, progress=False)
    elif command is not None:
        image = replace(image, initrd=images.build_initramfs(command), command=command)
    choice = choose_accel(accel, "linux")
    config, notes = linux_config(image, choice, machine=machine, cpu=cpu, memory_mib=memory_mib,
                                 vcpus=vcpus, append=append, host_tuning=host_tuning)
    config = replace(config, extra_args=config.extra_args + tuple(extra_args))
    with machine_with_nonce(config, "tiny") as (vm, token):
        return await _boot(vm, token, timeout, on_output, choice, config, notes)


@contextlib.contextmanager
def machine_with_nonce(config: MachineConfig, name: str) -> Iterator[tuple[QemuMachine, str]]:
    """A machine for ``config`` whose initramfs is a copy marked with a fresh nonce, and the nonce.

    The copy lives as long as the block.  A missing kernel or initramfs says
    so (:meth:`MachineConfig.validate`) before the copy is tried.
    """
    config.validate()
    token = images.nonce()
    with runtime.scratch("qemu-initrd") as folder:
        try:
            initrd = images.with_nonce(config.initrd, folder, token) if config.initrd else None
        except OSError as exc:
            raise from_os_error(exc, "copy the initramfs with this boot's nonce") from None
        yield QemuMachine(replace(config, initrd=initrd), name=name), token


def boot_blocking(image: images.GuestImage | None = None, **options: Any) -> BootResult:
    """:func:`boot`, for a caller that cannot ``await`` (an exercise's checker) — also inside a notebook.

    A notebook's kernel already runs an event loop in this thread, so the
    boot runs in a worker thread with a loop of its own; it returns when
    QEMU has exited.
    """
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="labkit-boot") as pool:
        return pool.submit(asyncio.run, boot(image, **options)).result()


async def _boot(vm: QemuMachine, token: str, timeout: float, on_output: Callable[[str], None] | None,
                choice: AccelChoice, config: MachineConfig, notes: tuple[str, ...]) -> BootResult:
    """Run ``vm`` until the guest reported and powered off; what it saw and when (see :func:`boot`)."""
    if on_output:
        vm.on_output(on_output)
    report_line = re.compile(re.escape(images.report_prefix(token)) + r".*\n")
    async with vm:
        start = time.monotonic()
        try:
            await vm.wait_for(report_line, timeout, label=f"{images.REPORT_MARKER.strip()} line")
        except GuestStoppedError:
            _raise_panic(vm.console, token)
            raise
        left = max(5.0, timeout - (time.monotonic() - start))
        stopped = False  # by labkit, after the guest announced its power-off
        try:
            exit_code: int | None = await vm.wait_exit(left)
        except GuestTimeoutError:
            _raise_panic(vm.console, token)
            if images.poweroff_announced(vm.console, token):
                # Everything the guest had to do is done and on the console; only its power-off did not end
                # QEMU (seen, rarely, on a host overloaded by many guests).  The result stands; the note says so.
                exit_code, stopped = None, True
                notes += (f"the guest announced its power-off, but QEMU was still running {left:g} s later: "
                          "labkit stopped it (poweroff_s is unknown)",)
            else:
                raise GuestTimeoutError(
                    f"the guest reported, but did not power off within {left:g} s more (labkit stopped it). "
                    f"Console tail:\n{vm.console_tail()}",
                    "a command that runs longer needs a longer timeout (labkit boot --timeout S, or "
                    "qemu.boot(timeout=S)); one that never ends (a shell loop) cannot finish") from None
    _raise_panic(vm.console, token)
    assert vm.launched_at is not None
    first, userspace = vm.first_output_at(), vm.seen_at(report_line)
    console = vm.console
    report = images.parse_report(console, token)
    times = BootTimes(
        first_output_s=first - vm.launched_at if first else None,
        userspace_s=(userspace or 0.0) - vm.launched_at,
        poweroff_s=vm.exited_at - vm.launched_at if vm.exited_at and not stopped else None,
        guest_uptime_s=report.uptime_s,
        qemu_start_s=vm.resumed_at - vm.launched_at if vm.resumed_at else None,
        init_s=report.init_s)
    return BootResult(report, times, choice, config, tuple(vm.command_line), console, exit_code, notes,
                      vm.usage)


def _raise_panic(console: str, token: str) -> None:
    """Raise :class:`GuestPanicError` if the guest's kernel panicked (its console says so); else nothing."""
    panic = images.find_panic(console, token)
    if panic is not None:
        raise GuestPanicError(panic.what, panic.fix)


# --------------------------------------------------------------------------- measuring accelerators

#: A CPU-bound loop the guest runs after its report, timed by the guest's own clock.
WORKLOAD_ITERATIONS = 100_000
WORKLOAD_COMMAND = ("read a _ </proc/uptime; "
                    f"awk 'BEGIN {{ for (i = 0; i < {WORKLOAD_ITERATIONS}; i++) s += i }}'; "
                    "read b _ </proc/uptime; echo \"LABKIT-WORKLOAD $a $b\"")


def workload_seconds(report: images.GuestReport) -> float | None:
    """How long :data:`WORKLOAD_COMMAND` took by the guest's clock (10 ms resolution), if it ran."""
    match = re.search(r"LABKIT-WORKLOAD ([\d.]+) ([\d.]+)", report.command_output or "")
    return float(match.group(2)) - float(match.group(1)) if match else None


async def compare_boots(image: images.GuestImage | None = None, boots: int = 3, workload: bool = True,
                        tcg: bool = True, **options: Any) -> list[BootResult]:
    """Boot the tiny guest ``boots`` times under TCG and, where KVM can boot Linux, under KVM.

    With ``workload``, each guest also runs :data:`WORKLOAD_COMMAND` (see
    :func:`workload_seconds`).  Boots alternate between accelerators so a
    busy moment on a shared host does not favour one of them.  ``tcg=False``
    leaves TCG out where KVM boots Linux (inside ``labkit nested``, a TCG boot is
    an emulator inside an emulator: minutes on a loaded host, and no part of the
    hardware path); where KVM cannot, TCG is all there is to time.
    """
    kvm_boots = choose_accel("auto", "linux").name == "kvm"
    accels: list[Accel] = (["tcg", "kvm"] if tcg else ["kvm"]) if kvm_boots else ["tcg"]
    results = []
    for _ in range(boots):
        for accel in accels:
            results.append(await boot(image, accel=accel, command=WORKLOAD_COMMAND if workload else None,
                                      **options))
    return results


# --------------------------------------------------------------------------- summing up boots


@dataclass(frozen=True)
class Spread:
    """Median, fastest and slowest of one measure over several boots, in seconds."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Spread | None:
        """The spread of the values that were measured (None: none was)."""
        got = [v for v in values if v is not None]
        return cls(statistics.median(got), min(got), max(got)) if got else None


@dataclass(frozen=True)
class BootSummary:
    """Boots under one accelerator summed up: each phase of :class:`BootTimes` and the workload, as spreads."""

    accel: str  # "kvm" or "tcg"
    boots: int
    first_output_s: Spread | None
    userspace_s: Spread | None
    poweroff_s: Spread | None
    guest_uptime_s: Spread | None
    before_kernel_s: Spread | None
    workload_s: Spread | None  # :data:`WORKLOAD_COMMAND` by the guest's clock, where the boots ran it
    qemu_start_s: Spread | None = None  # see :class:`BootTimes`
    early_kernel_s: Spread | None = None
    init_s: Spread | None = None
    qemu_cpu_s: Spread | None = None  # QEMU's CPU time per boot (:class:`QemuUsage`)
    peak_rss_mib: Spread | None = None  # QEMU's peak resident memory per boot, in MiB


def summarize_boots(results: Iterable[BootResult]) -> dict[str, BootSummary]:
    """Boots (e.g. from :func:`compare_boots`) summed up per accelerator, in the order the accelerators came.

    Medians, not means: on a shared host one boot that waited for a busy CPU
    must not move the figure.
    """
    by_accel: dict[str, list[BootResult]] = {}
    for result in results:
        by_accel.setdefault(result.accel.name, []).append(result)
    return {accel: BootSummary(
        accel, len(boots),
        Spread.of(b.times.first_output_s for b in boots), Spread.of(b.times.userspace_s for b in boots),
        Spread.of(b.times.poweroff_s for b in boots), Spread.of(b.times.guest_uptime_s for b in boots),
        Spread.of(b.times.before_kernel_s for b in boots), Spread.of(workload_seconds(b.report) for b in boots),
        Spread.of(b.times.qemu_start_s for b in boots), Spread.of(b.times.early_kernel_s for b in boots),
        Spread.of(b.times.init_s for b in boots), Spread.of(b.usage.cpu_s if b.usage else None for b in boots),
        Spread.of(b.usage.peak_rss_mib if b.usage else None for b in boots),
    ) for accel, boots in by_accel.items()}
