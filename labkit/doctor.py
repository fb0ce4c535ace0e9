"""Is this host ready for the lab?  One check per part, each with its fix, then notebook by notebook.

A check is ``ok``, ``warn`` (works, but worse than it could: e.g. KVM without
hardware virtualization, or notebook 03 showing a recorded run because this
user may not open ``/dev/kvm``) or ``fail`` (a notebook of the sequence cannot
run).  The notebook lines say what each notebook will do *for this user*.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import psutil

from labkit import host
from labkit.i18n import _

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None


def check_kernel(report: host.HostReport) -> Check:
    k = report.kernel
    kvm = ", ".join(f"{m.name} ({m.state})" for m in k.kvm_modules if m.present) or _("none")
    return Check("kernel", "ok", _("Linux {release} ({arch}); KVM modules: {modules}").format(
        release=k.release, arch=report.cpu.arch, modules=kvm))


def check_cpu(report: host.HostReport) -> Check:
    cpu, vt = report.cpu, report.verdict.virtualization
    ok = vt.state == "offered"
    detail = _("{model} ({vendor}), {cpus} logical CPUs; ").format(
        model=cpu.model_name, vendor=cpu.vendor, cpus=cpu.logical_cpus) + (
        _("{extension} available").format(extension=vt.extension) if ok else
        (vt.extension or _("hardware virtualization")) + ": " + _(vt.state) + f" ({'; '.join(vt.evidence)})")
    fix = None if ok else report.verdict.fix
    return Check("cpu", "ok" if ok else "warn", detail, fix)


def check_platform(report: host.HostReport) -> Check:
    nested = _(" — KVM guests here are nested") if report.nested else ""
    return Check("platform", "ok", str(report.platform.summary) + nested)


def check_kvm(report: host.HostReport) -> Check:
    v = report.verdict
    status: Status = "ok" if v.kind == "hardware" and v.usable else "warn"
    detail = v.label + ("" if v.usable or v.kind == "none" else _(" (not usable by you)"))
    if v.kind == "nested":
        detail += _("; Linux guests fall back to QEMU's TCG emulator")
    elif v.kind == "none":
        detail += _("; everything still runs under QEMU's TCG emulator, the raw-KVM notebook cannot")
    return Check("kvm", status, detail, v.fix)


#: Programs the sequence runs, the apt package that has each, and the notebooks that need it.
PROGRAMS = {
    "qemu-system-x86_64": ("qemu-system-x86", "04 QEMU, 05 libvirt"),
    "as": ("binutils", "03 KVM, 04 QEMU"),
    "ld": ("binutils", "03 KVM, 04 QEMU"),
    "busybox": ("busybox-static", "04 QEMU, 05 libvirt"),
    "virsh": ("libvirt-clients", "05 libvirt"),
    "libvirtd": ("libvirt-daemon", "05 libvirt"),
}

#: Python modules the sequence imports, and the distribution that provides each.
MODULES = {"libvirt": "libvirt-python", "capstone": "capstone", "qemu.qmp": "qemu.qmp",
           "ipywidgets": "ipywidgets", "psutil": "psutil"}


def check_programs() -> list[Check]:
    checks = []
    for prog, (pkg, needed_by) in PROGRAMS.items():
        path = shutil.which(prog) or shutil.which(prog, path="/usr/sbin:/sbin")
        checks.append(Check(prog, "ok", path) if path else
                      Check(prog, "fail", _("not installed (needed by {notebooks})").format(notebooks=needed_by),
                            _("{command}  (./kvmlab setup does it)").format(command=f"sudo apt-get install {pkg}")))
    return checks


def check_modules() -> list[Check]:
    checks = []
    for mod, dist in MODULES.items():
        found = importlib.util.find_spec(mod.split(".")[0]) is not None and (
            "." not in mod or importlib.util.find_spec(mod) is not None)
        checks.append(Check(f"python:{mod}", "ok" if found else "fail",
                            _("importable") if found else _("not importable"),
                            None if found else _("{command}  (./kvmlab setup does it)").format(
                                command=f"pip install {dist}")))
    return checks


def check_guest_image() -> Check:
    """The tiny guest is built (notebooks 04/05 never download at run time)."""
    try:
        from labkit import images

        files = images.cache_info()
    except (ImportError, OSError) as exc:
        return Check("guest image", "warn", f"cannot look at the image cache ({exc})", "./kvmlab setup")
    damaged = [f for f in files if f.damaged]
    if damaged:  # it would boot into a kernel panic: say so here, not in notebook 04
        return Check("guest image", "fail", "; ".join(str(f.damaged) for f in damaged),
                     images.cache.rebuild_fix(damaged[0].path))
    cached = {f.kind for f in files}
    if {"kernel", "initramfs"} <= cached:
        return Check("guest image", "ok", _("tiny guest kernel and initramfs are cached"))
    return Check("guest image", "warn", _("the tiny guest is not built yet (notebooks 04 and 05 would build it)"),
                 "labkit image build (./kvmlab setup does it; instructors: labkit image build --into "
                 "/var/cache/labkit for every user)")


def check_libvirt() -> Check:
    """Which libvirt this user gets, and whether its daemon answers (without starting one)."""
    try:
        from labkit import libvirtd, virt
    except ImportError as exc:
        return Check("libvirt", "warn", f"libvirt-python is missing ({exc.name})", "./kvmlab setup")
    choice = virt.choose_uri()
    if choice.uri != libvirtd.SYSTEM_URI:
        return Check("libvirt", "ok", f"{choice.uri}: {choice.reason}")
    daemon = libvirtd.status()
    if daemon.running:
        return Check("libvirt", "ok", daemon.detail)
    return Check("libvirt", "warn", _("{detail} (notebook 05 starts it when it needs it)").format(detail=daemon.detail),
                 _("labkit virt up (as root, where no init system runs libvirtd)"))


def check_notebooks(report: host.HostReport, checks: list[Check]) -> list[Check]:
    """One line per notebook: what it will do here for this user, failing where a part it needs failed."""
    failed = {c.name: c for c in checks if c.status == "fail"}
    needs = {nb: [name for name, (_, users) in PROGRAMS.items() if nb in users] for nb in
             ("03 KVM", "04 QEMU", "05 libvirt")}
    needs["05 libvirt"] += ["python:libvirt"]
    needs["04 QEMU"] += ["python:qemu.qmp"]
    needs["03 KVM"] += ["python:capstone"]
    out = []
    for o in host.notebook_outlook(report):
        missing = [failed[n] for n in needs.get(o.notebook, []) if n in failed]
        if missing:
            out.append(Check(f"notebook {o.notebook}", "fail", _("cannot run: ") + "; ".join(
                f"{c.name} {c.detail}" for c in missing), missing[0].fix))
        else:
            out.append(Check(f"notebook {o.notebook}", "ok" if o.runs == "live" else "warn", o.detail, o.fix))
    return out


def check_students(report: host.HostReport) -> Check:
    """What an unprivileged student account gets here: /dev/kvm or not, libvirt session mode."""
    student = host.User(65534, frozenset({65534}))  # nobody: a user in no special group
    dev = host.kvm_device(host.source_for("/"), student)
    kvm_group = report.kvm.group == "kvm" and report.kvm.mode is not None and int(report.kvm.mode, 8) & 0o060
    if not report.kvm.present:
        kvm = _("no /dev/kvm: everyone runs TCG")
    elif dev.accessible:
        kvm = _("every user can open /dev/kvm")
    elif kvm_group:
        kvm = _("members of the kvm group can open /dev/kvm (add students: sudo usermod -aG kvm NAME)")
    else:
        kvm = _("only {owner} can open /dev/kvm (mode {mode}): students run TCG").format(
            owner=report.kvm.owner, mode=report.kvm.mode)
    session = shutil.which("libvirtd", path="/usr/sbin:/usr/bin:/sbin") is not None
    detail = kvm + "; libvirt: " + (_("each student gets a private qemu:///session daemon") if session
                                    else _("libvirtd is not installed"))
    fix = None if dev.accessible or not report.kvm.present else (
        "add students: sudo usermod -aG kvm NAME" if kvm_group else
        "to give students KVM: " + host.group_access_commands(report.kvm, "NAME"))
    return Check("students", "ok" if session else "warn", detail, fix)


def check_privacy(_report: host.HostReport) -> Check:
    """Whether students on this host can see each other's processes and command lines (``/proc`` hidepid)."""
    from labkit.hub import privacy

    seen = privacy.process_privacy()
    return Check("process privacy", "ok" if seen.hidden else "warn", seen.detail,
                 None if seen.hidden else privacy.FIX)


@dataclass(frozen=True)
class SeatEstimate:
    """Memory and CPU one student needs for the whole sequence, and how many this host can seat.

    The parts were measured on the machines this lab is tested on (2 cores,
    TCG; peak resident memory while running notebooks 03-05 with their
    default parameters): a notebook kernel ~115 MiB, a QEMU process for the
    tiny guest ~200-210 MiB (for 128 or 256 MiB of guest RAM: the guest
    touches little of it), a per-user libvirtd ~60 MiB, and a JupyterLab
    server ~120 MiB when each student has their own (JupyterHub).  Only one
    guest runs at a time in the sequence; a guest boot keeps one core busy
    for 1.5-3 s under TCG.
    """

    parts_mib: dict[str, int]
    available_mib: int
    cpus: int

    @property
    def per_seat_mib(self) -> int:
        return sum(self.parts_mib.values())

    @property
    def seats_by_memory(self) -> int:
        return self.available_mib // self.per_seat_mib

    @property
    def simultaneous_boots(self) -> int:
        """Students who can boot a guest at the very same moment without slowing each other."""
        return self.cpus


SEAT_PARTS_MIB = {"JupyterLab server": 120, "notebook kernel": 115, "QEMU + tiny guest": 210, "libvirtd (session)": 60}


def seat_estimate(report: host.HostReport) -> SeatEstimate:
    return SeatEstimate(dict(SEAT_PARTS_MIB), psutil.virtual_memory().available >> 20, report.cpu.logical_cpus)


def check_seats(report: host.HostReport) -> Check:
    seats = seat_estimate(report)
    return Check("per seat", "ok",
                 _("about {per_seat} MiB and 1 CPU while a guest boots, per student; this host has {available} MiB "
                   "available and {cpus} CPUs: about {seats} students by memory, {boots} booting at the same moment"
                   ).format(per_seat=seats.per_seat_mib, available=seats.available_mib, cpus=seats.cpus,
                            seats=seats.seats_by_memory, boots=seats.simultaneous_boots))


HOST_CHECKS: tuple[Callable[[host.HostReport], Check], ...] = (
    check_kernel, check_cpu, check_platform, check_kvm)
INSTRUCTOR_CHECKS: tuple[Callable[[host.HostReport], Check], ...] = (check_students, check_privacy, check_seats)


def run_checks(report: host.HostReport | None = None) -> list[Check]:
    """All checks, in the order the report prints them: host, programs, modules, notebooks, instructor."""
    report = report or host.inspect()
    checks = ([c(report) for c in HOST_CHECKS] + check_programs() + check_modules()
              + [check_guest_image(), check_libvirt()])
    return checks + check_notebooks(report, checks) + [c(report) for c in INSTRUCTOR_CHECKS]


def can_run(checks: list[Check]) -> bool:
    """The lab can run when no check failed (warnings only make it slower or narrower)."""
    return all(c.status != "fail" for c in checks)


def limited_notebooks(checks: list[Check]) -> list[Check]:
    """Notebooks that run only partly here (e.g. 03 showing a recorded run)."""
    return [c for c in checks if c.name.startswith("notebook ") and c.status == "warn"]


def summary(checks: list[Check]) -> str:
    """The last line of the report: never a plain "ready" when a notebook will run only partly."""
    if not can_run(checks):
        return _("NOT READY: fix the FAIL lines above")
    limited = limited_notebooks(checks)
    if limited:
        names = ", ".join(c.name.removeprefix("notebook ") for c in limited)
        return _("PARTLY READY: every notebook runs, but {names} only partly for you (see its WARN line and fix)"
                 ).format(names=names)
    return _("ready: the lab can run")


def as_dicts(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]
