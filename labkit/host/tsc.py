"""The host's TSC frequency, read from any source (this machine or a recording)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from labkit.host.sources import source_for
from labkit.i18n import Phrase
from labkit.i18n import noop as N_


@dataclass(frozen=True)
class TscFrequency:
    """The host's TSC frequency and where it was read."""

    khz: int
    source: str


#: Set on the kernel command line of :mod:`labkit.nested`'s L1 to the host's TSC kHz.  L1's CPU is TCG's,
#: whose RDTSC returns the host's counter, but it cannot say so: TCG does not offer ``invtsc``, so L1's
#: kernel shows no ``constant_tsc``.
HOST_TSC_PARAMETER = "labkit.host_tsc_khz"


def tsc_frequency(root: Path | str = "/") -> TscFrequency | None:
    """The host's (invariant) TSC frequency and its evidence, or None when it cannot be known for sure.

    :mod:`labkit.qemu` uses it: under TCG the guest's TSC *is* the host's (QEMU reads the host counter),
    but the guest kernel calibrates it against an emulated timer, which is
    slow and can fail ("Unable to calibrate against PIT") on a busy host.
    Passing the known frequency as ``tsc_early_khz`` skips that.  :mod:`labkit.lessons.payload` times loops by it.
    """
    from labkit import host  # looked up on the package, where a test may stand in another CPU

    src = source_for(root)
    given = re.search(rf"(?:^|\s){re.escape(HOST_TSC_PARAMETER)}=(\d+)(?:\s|$)", src.read("proc/cmdline") or "")
    if given:  # the emulated AMD-V machine (labkit.nested): TCG's RDTSC reads the host's invariant counter
        return TscFrequency(int(given.group(1)), f"the kernel command line's {HOST_TSC_PARAMETER} (an emulated "
                            "CPU whose TSC is its host's, which labkit nested measured)")
    cpu = host.cpu_info(src)
    if "constant_tsc" not in cpu.flags:
        return None
    sysfs = src.read("sys/devices/system/cpu/cpu0/tsc_freq_khz")
    if sysfs and sysfs.strip().isdigit():
        return TscFrequency(int(sysfs), "/sys/devices/system/cpu/cpu0/tsc_freq_khz")
    leaf0 = src.cpuid(0)
    if leaf0 and leaf0[0] >= 0x15:
        denominator, numerator, crystal_hz, _ = src.cpuid(0x15) or (0, 0, 0, 0)
        if denominator and numerator and crystal_hz:
            return TscFrequency(crystal_hz * numerator // denominator // 1000,
                                Phrase(N_("CPUID leaf 0x15 (crystal clock × TSC ratio)")))
    hv = src.cpuid(0x40000000) if cpu.hypervisor_flag else None
    if hv and hv[0] >= 0x40000010:
        khz = (src.cpuid(0x40000010) or (0,))[0]
        if khz:
            return TscFrequency(khz, Phrase(N_("CPUID leaf 0x40000010 (the hypervisor's timing leaf)")))
    if not src.exists("sys/devices/system/cpu/cpu0/cpufreq"):
        match = re.search(r"^cpu MHz\s*:\s*([\d.]+)", src.read("proc/cpuinfo") or "", re.MULTILINE)
        if match:  # no frequency scaling: the kernel's figure is its TSC calibration
            return TscFrequency(round(float(match.group(1)) * 1000),
                                Phrase(N_("/proc/cpuinfo 'cpu MHz' (constant TSC, no frequency scaling)")))
    return None
