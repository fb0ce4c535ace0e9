"""What does libvirt cost on top of QEMU?  The tiny guest booted both ways, alternately, step by step.

Run by hand (never in the test suite), as root or as a normal user:

    .venv/bin/python bench/virt_boot.py [--runs 5] [--memory 256] [--vcpus 1] [--uri URI]

libvirt, in seconds since the Domain object was created:
  define      ``virsh define`` returned;
  spawned     QEMU's process was created (10 ms resolution);
  start       ``virsh start`` returned: libvirt spawned QEMU paused, talked
              QMP with it (its guest-CPU check alone is ~400 ``qom-get``
              round trips), set up cgroups and namespaces, then let it run;
  report      labkit saw the guest's /init report (the console is read every
              20 ms, a lifecycle event wakes the wait).
Raw QEMU (labkit.qemu.boot, same kernel, initramfs, memory, vCPUs, machine
``pc`` and accelerator), in seconds since launch: report.  Both:
``guest clock`` is the guest kernel's own clock at /init, so ``report -
guest clock`` is what came before the kernel's clock (QEMU, libvirt, loading);
raw QEMU's guest gets ``tsc_early_khz`` (labkit.qemu's host tuning), which
starts its clock earlier, so compare the reports, not the clocks.
CPU: libvirt's QEMU at the report, raw QEMU over its whole life (it is this
process's child), and the daemon during define → report (a shared daemon:
other clients' work counts too).

Runs alternate so a noisy neighbour hurts both alike; read the medians and
the same-run ratio.  The first start on a freshly started daemon also probes
QEMU's capabilities (seconds): run once before measuring on a new daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time

import psutil

from labkit import images, qemu, virt


def started_at(pid: int) -> float:
    """When process ``pid`` started, in seconds since the host booted (``/proc/PID/stat``, clock ticks).

    Not psutil's create_time: it adds /proc/stat's btime, whole seconds, which puts it up to 1 s off.
    """
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def libvirt_boot(conn: virt.Connection, spec: virt.DomainSpec, daemon: psutil.Process | None) -> dict[str, float]:
    """One define → start → report through libvirt: its steps, guest clock and CPU times."""
    cpu0 = sum(daemon.cpu_times()[:2]) if daemon else 0.0
    with conn.define(spec) as dom:
        boot_at_t0 = time.clock_gettime(time.CLOCK_BOOTTIME) - dom._elapsed()
        dom.start()
        spawned = min(map(started_at, virt.qemu_pids(dom.name))) - boot_at_t0
        report = dom.wait_for_report(timeout=120)
        row = {**dom.timeline, "spawned": spawned, "guest_clock": report.uptime_s,
               "qemu_cpu": dom.stats().cpu_time_ns / 1e9}
    row["daemon_cpu"] = sum(daemon.cpu_times()[:2]) - cpu0 if daemon else float("nan")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--memory", type=int, default=256, help="MiB")
    parser.add_argument("--vcpus", type=int, default=1)
    parser.add_argument("--uri", help="libvirt URI (default: the lab's choice, e.g. qemu:///system as root)")
    args = parser.parse_args()

    image = images.tiny_guest()
    libvirt_rows: list[dict[str, float]] = []
    raw_rows: list[dict[str, float]] = []
    with virt.connect(args.uri) as conn:
        dtype = conn.domain_type()
        accel: qemu.Accel = "kvm" if dtype.type == "kvm" else "tcg"
        daemon = psutil.Process(conn.daemon.pid) if conn.daemon and conn.daemon.pid else None
        print(f"{conn.uri}, domain type {dtype.type}; raw QEMU with -accel {accel} -machine pc; "
              f"{args.memory} MiB, {args.vcpus} vCPU(s); load {psutil.getloadavg()[0]:.1f}")
        for i in range(args.runs):
            spec = virt.DomainSpec.for_image(f"bench-{i}", image, memory_mib=args.memory, vcpus=args.vcpus,
                                             domain_type=dtype.type)
            row = libvirt_boot(conn, spec, daemon)
            libvirt_rows.append(row)
            children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = asyncio.run(qemu.boot(image, accel=accel, machine="pc", memory_mib=args.memory,
                                           vcpus=args.vcpus, timeout=120))
            t = result.times
            children = resource.getrusage(resource.RUSAGE_CHILDREN)  # QEMU is our child: its whole life
            raw_rows.append({"report": t.userspace_s, "guest_clock": t.guest_uptime_s,
                             "qemu_cpu": children.ru_utime + children.ru_stime
                             - children0.ru_utime - children0.ru_stime})
            print(f"run {i + 1}: libvirt define {row['defined']:.3f}, QEMU spawned {row['spawned']:.2f}, start "
                  f"{row['started']:.3f}, report {row['report']:.3f} s (guest clock {row['guest_clock']:.3f}) | "
                  f"raw QEMU report {t.userspace_s:.3f} s (guest clock {t.guest_uptime_s:.3f})")

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    lv, raw = {k: med(libvirt_rows, k) for k in libvirt_rows[0]}, {k: med(raw_rows, k) for k in raw_rows[0]}
    print(f"\nmedians of {args.runs}          libvirt    raw QEMU")
    print(f"  define returned        {lv['defined']:8.3f}           -")
    print(f"  QEMU spawned           {lv['spawned']:8.3f}       0.000")
    print(f"  start returned         {lv['started']:8.3f}           -   (raw: QMP and cont are in the report)")
    print(f"  report seen            {lv['report']:8.3f}    {raw['report']:8.3f}")
    print(f"  guest clock at /init   {lv['guest_clock']:8.3f}    {raw['guest_clock']:8.3f}")
    print(f"  before the guest clock {lv['report'] - lv['guest_clock']:8.3f}    "
          f"{raw['report'] - raw['guest_clock']:8.3f}")
    print(f"  QEMU CPU time          {lv['qemu_cpu']:8.3f}    {raw['qemu_cpu']:8.3f}   (libvirt: at the report; "
          "raw: its whole life, power-off included)")
    print(f"  daemon CPU time        {lv['daemon_cpu']:8.3f}           -   (a shared daemon: others' calls count "
          "too)")
    ratios = sorted(a["report"] / b["report"] for a, b in zip(libvirt_rows, raw_rows))
    print(f"libvirt define → guest userspace / raw QEMU launch → userspace: {lv['report'] / raw['report']:.2f}x "
          f"(ratio of medians); per run pair {ratios[0]:.2f}–{ratios[-1]:.2f}x, median "
          f"{statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
