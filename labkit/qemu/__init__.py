"""QEMU as a Python object: typed options → command line, launch, console, QMP, cleanup.

:class:`MachineConfig` holds typed options and validates them (clear errors
before QEMU ever runs); :class:`QemuMachine` launches ``qemu-system-x86_64``
without a shell, in its own process group, with the serial console and the
QMP monitor on socket pairs (no paths to race on), reads the console in a
thread that timestamps every chunk, and talks QMP through the ``qemu.qmp``
library (asyncio: a notebook can ``await`` it).  The process group is killed
on error, timeout, ``KeyboardInterrupt`` and interpreter exit.

:func:`boot` boots the tiny guest of :mod:`labkit.images` and returns what
the guest reported plus when each phase was reached (:class:`BootTimes`).

The accelerator: :func:`choose_accel` picks KVM only where it can run the
guest — for Linux that needs hardware virtualization (VT-x/AMD-V); on hosts
where KVM exists but cannot boot Linux (nested PVM, see ``labkit doctor``)
it picks TCG, QEMU's emulator, and says why.  ``-cpu host``/``max`` are only
used when asked for, and ``host`` only with hardware KVM.

The package, one job per module: :mod:`~labkit.qemu.accel` (KVM or TCG),
:mod:`~labkit.qemu.config` (options → command line),
:mod:`~labkit.qemu.machine` (the running QEMU), :mod:`~labkit.qemu.firmware` (a -bios image of our own)
and :mod:`~labkit.qemu.boots`
(booting and timing the tiny guest); their public names are all here, as ``qemu.X``.
"""

from labkit.errors import GuestPanicError, GuestStoppedError, GuestTimeoutError, MissingKernelError
from labkit.qemu.accel import Accel, AccelChoice, KvmCannotBootLinuxError, Purpose, choose_accel
from labkit.qemu.attempt import (
    ATTEMPT_S,
    NOT_TRIED,
    KvmAttempt,
    KvmPlan,
    attempt_kvm_boot,
    kvm_evidence,
    plan_kvm_boot,
)
from labkit.qemu.boots import (
    MICROVM_WITH_RTC,
    MICROVM_WITHOUT_ACPI,
    WORKLOAD_COMMAND,
    WORKLOAD_ITERATIONS,
    BootResult,
    BootSummary,
    BootTimes,
    Spread,
    boot,
    boot_blocking,
    compare_boots,
    linux_config,
    summarize_boots,
    workload_seconds,
)
from labkit.qemu.config import (
    DEBUG_EXIT_DEVICE,
    DEBUG_EXIT_PORT,
    QEMU,
    MachineConfig,
    cpu_models,
    machine_types,
    qemu_binary,
    qemu_name,
    qemu_version,
)
from labkit.qemu.firmware import BIOS_ORIGIN, BIOS_SIZE, bios_image
from labkit.qemu.machine import (
    ConsoleChunk,
    LaunchError,
    QemuError,
    QemuMachine,
    QemuUsage,
    die_with_parent,
    parse_registers,
)

__all__ = [
    "BIOS_ORIGIN", "BIOS_SIZE", "bios_image",
    "ATTEMPT_S", "NOT_TRIED", "KvmAttempt", "KvmPlan", "attempt_kvm_boot", "kvm_evidence", "plan_kvm_boot",
    "DEBUG_EXIT_DEVICE", "DEBUG_EXIT_PORT", "MICROVM_WITH_RTC", "MICROVM_WITHOUT_ACPI", "QEMU", "WORKLOAD_COMMAND",
    "WORKLOAD_ITERATIONS",
    "Accel", "AccelChoice", "BootResult", "BootSummary", "BootTimes", "ConsoleChunk", "GuestPanicError",
    "GuestStoppedError", "GuestTimeoutError", "KvmCannotBootLinuxError", "LaunchError", "MachineConfig",
    "MissingKernelError", "Purpose", "QemuError", "QemuMachine", "QemuUsage", "Spread", "boot", "boot_blocking",
    "choose_accel",
    "compare_boots", "cpu_models", "die_with_parent", "linux_config", "machine_types", "parse_registers",
    "qemu_binary", "qemu_name", "qemu_version", "summarize_boots", "workload_seconds",
]
