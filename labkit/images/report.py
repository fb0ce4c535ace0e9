"""The guest report protocol: the nonce that frames a boot's output, and the console parsed into a report.

The tiny guest's ``/init`` prints one machine-readable line::

    LABKIT-REPORT <nonce> {"v":1,"kernel":"6.1.0-…","cpus":1,"mem_kib":…,"flags":"…",…}

then the learner's command between ``LABKIT-COMMAND-BEGIN``/``-END``
markers, and powers the machine off.
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from labkit import formats, host
from labkit.errors import GuestPanicError, console_tail
from labkit.images.errors import ImageError, ReportNotFoundError

#: The marker that starts the guest's report line on the console.
REPORT_MARKER = "LABKIT-REPORT "
#: Printed by /init around the output of the learner's command.
COMMAND_BEGIN, COMMAND_END = "LABKIT-COMMAND-BEGIN", "LABKIT-COMMAND-END"
#: /init's last line before ``poweroff -f``.
POWEROFF_MARKER = "LABKIT-POWEROFF"


@dataclass(frozen=True)
class GuestReport:
    """What the guest saw from the inside, as its ``/init`` reported it."""

    kernel_release: str
    machine: str
    cpus: int
    mem_kib: int
    cpu_vendor: str
    cpu_model: str
    flags: frozenset[str]
    cpuid_signature: str  # CPUID leaf 0x40000000 as text ('' when the CPU shows no hypervisor)
    kernel_hypervisor: str  # the guest kernel's "Hypervisor detected: …" ('' if it said nothing)
    clocksource: str
    uptime_s: float  # the guest's clock when /init started: kernel start → userspace
    cmdline: str
    command_output: str | None = None
    command_status: int | None = None
    report_uptime_s: float | None = None  # the guest's clock when /init had gathered its report (older: None)

    @property
    def init_s(self) -> float | None:
        """The guest's clock from /init's start to its report: /init's own work (mounts, CPUID, awk)."""
        return None if self.report_uptime_s is None else max(0.0, self.report_uptime_s - self.uptime_s)

    @property
    def memory_mib(self) -> int:
        return self.mem_kib // 1024

    @property
    def hypervisor_flag(self) -> bool:
        """CPUID.1:ECX bit 31: the CPU tells software it runs under a hypervisor."""
        return "hypervisor" in self.flags

    @property
    def hypervisor(self) -> str | None:
        """The hypervisor the guest's CPU names (e.g. ``"QEMU TCG"``, ``"KVM"``), or None."""
        if not self.hypervisor_flag:
            return None
        return host.HYPERVISOR_SIGNATURES.get(self.cpuid_signature) or self.kernel_hypervisor or None

    @property
    def hardware_virtualization(self) -> str | None:
        """VT-x/AMD-V as the guest's CPU advertises it (what nested virtualization would need)."""
        return "Intel VT-x" if "vmx" in self.flags else "AMD-V" if "svm" in self.flags else None

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(flags=sorted(self.flags), hypervisor=self.hypervisor,
                    hardware_virtualization=self.hardware_virtualization)
        return data


_PANIC = re.compile(r"^(?:\[[ \d.]+\] )?Kernel panic - not syncing: .*$", re.MULTILINE)


def nonce() -> str:
    """A fresh unguessable token for one boot (see :func:`with_nonce`)."""
    return secrets.token_hex(8)


def with_nonce(initrd: Path, folder: Path, token: str) -> Path:
    """A copy of ``initrd`` in ``folder`` that also holds ``/labkit/nonce`` = ``token``; its path.

    ``/init`` reads the nonce, deletes the file and only then runs the
    learner's command, so the command cannot learn it (it is not on the
    kernel command line, in ``dmesg`` or in the environment): the markers it
    would have to print to fake the end of its output are unknown to it.
    (A command that digs through PID 1's memory as the guest's root could
    still find it: this guards the output's framing, not against a hostile guest.)
    """
    extra = formats.cpio([("labkit", 0o040755, b""), ("labkit/nonce", 0o100600, token.encode() + b"\n")])
    target = folder / "initrd.cpio.gz"
    try:
        with open(target, "wb") as out:
            with open(initrd, "rb") as src:
                shutil.copyfileobj(src, out)
            out.write(gzip.compress(extra, mtime=0))
    except OSError as exc:  # a failed write() names no file: the error should say where (a full run dir)
        exc.filename = exc.filename or str(target)
        raise
    target.chmod(0o644)  # libvirt's QEMU (another user) reads it; the folder is what is private
    return target


def report_prefix(token: str | None = None) -> str:
    """How the report line starts: ``LABKIT-REPORT <nonce> `` for a boot with a nonce."""
    return f"{REPORT_MARKER}{token} " if token else REPORT_MARKER


def parse_report(console: str, token: str | None = None) -> GuestReport:
    """The guest's report from a console transcript (serial log), with the command's output.

    ``token`` is the boot's nonce (:func:`with_nonce`): only a report line
    and command markers carrying it count.  Raises :class:`GuestPanicError`
    when the guest's kernel panicked before the command finished, and
    :class:`ReportNotFoundError`, quoting the end of the transcript, when the
    guest never printed its report (it did not reach ``/init``).
    """
    text = console.replace("\r\n", "\n").replace("\r", "")
    start = report_prefix(token)
    line = next((l for l in text.splitlines() if l.startswith(start)), None)
    output, status = _command_result(text, token) if line is not None else (None, None)
    panic = _PANIC.search(text)
    if panic and status is None:
        raise GuestPanicError(
            f"the guest's kernel panicked: {panic.group(0).split('Kernel panic - ')[-1]}. Last console lines:\n"
            f"{console_tail(text[:panic.end()], 12)}",
            "if your command crashed the guest on purpose (echo c > /proc/sysrq-trigger), that is the "
            "expected end; otherwise the lines above say why, and a damaged image is rebuilt with "
            "`labkit image build --force`")
    if line is None:
        tail = console_tail(text)
        raise ReportNotFoundError(
            f"the guest printed no {REPORT_MARKER.strip()} line: it did not reach its /init. "
            f"Last console lines:\n{tail}",
            "look at the console lines above for the kernel's last words (a panic, a missing "
            "initramfs); rebuild the image with `labkit image build --force`")
    body = line[len(start):]
    if token is None and re.match(r"[0-9a-f]{16} \{", body):  # a boot with a nonce, read without it
        body = body[17:]
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or not {"kernel", "cpus", "mem_kib", "flags"} <= data.keys():
            raise ValueError("fields are missing")
    except ValueError as exc:
        raise ReportNotFoundError(f"the guest's report line is not valid JSON ({exc}): {line!r}. "
                                  f"Last console lines:\n{console_tail(text)}",
                                  "the guest stopped while printing it, or something else wrote to its "
                                  "console meanwhile: see the lines above; boot again") from None
    return GuestReport(
        kernel_release=data["kernel"], machine=data["machine"], cpus=int(data["cpus"]),
        mem_kib=int(data["mem_kib"]), cpu_vendor=data["vendor"], cpu_model=data["model"],
        flags=frozenset(data["flags"].split()), cpuid_signature=_signature(data["cpuid_40000000"]),
        kernel_hypervisor=data["kernel_hypervisor"], clocksource=data["clocksource"],
        uptime_s=float(data["uptime_s"]), cmdline=data["cmdline"],
        command_output=output, command_status=status,
        report_uptime_s=float(data["report_uptime_s"]) if "report_uptime_s" in data else None)


def find_panic(console: str, token: str | None = None) -> GuestPanicError | None:
    """The :class:`GuestPanicError` a console shows (the kernel panicked before the command ended), or None."""
    try:
        parse_report(console, token)
    except GuestPanicError as exc:
        return exc
    except ImageError:
        pass
    return None


def _signature(hex_text: str) -> str:
    """The 12 signature bytes (EBX, ECX, EDX) as text, NULs dropped."""
    try:
        raw = bytes.fromhex(hex_text.strip())
    except ValueError:
        return ""
    return raw.rstrip(b"\0").decode("ascii", "replace")


def _command_result(text: str, token: str | None) -> tuple[str | None, int | None]:
    tag = f" {token}" if token else ""
    begin = re.search(rf"^{COMMAND_BEGIN}{tag}\n" if token else rf"^{COMMAND_BEGIN}(?: [0-9a-f]{{16}})?\n",
                      text, re.MULTILINE)
    if begin is None:
        return None, None
    body = text[begin.end():]
    match = re.search(rf"^{COMMAND_END}{tag} (\d+)$" if token else rf"^{COMMAND_END}(?: [0-9a-f]{{16}})? (\d+)$",
                      body, re.MULTILINE)
    if match is None:  # the guest stopped while the command ran
        return body, None
    return body[:match.start()], int(match.group(1))


def poweroff_announced(console: str, token: str) -> bool:
    """Whether /init said it is powering off, after everything else it had to do.

    Its line counts only after the report and, when the learner's command ran, after that command's end
    line: both carry this boot's nonce, so a command that prints the marker itself cannot fake it.
    """
    report = console.rfind(report_prefix(token))
    begin, end = console.rfind(f"{COMMAND_BEGIN} {token}"), console.rfind(f"{COMMAND_END} {token} ")
    if report < 0 or begin > end:  # no report yet, or the command is still running
        return False
    return re.search(rf"^{POWEROFF_MARKER}\r?$", console[max(report, end):], re.MULTILINE) is not None
