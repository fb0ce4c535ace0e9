"""KVM or TCG: the accelerator QEMU uses for a guest on this host, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from labkit import host
from labkit.errors import InvalidOptionError, KvmUnavailableError
from labkit.i18n import Phrase, joined
from labkit.i18n import noop as N_
from labkit.qemu.machine import QemuError

Accel = Literal["auto", "kvm", "tcg"]
Purpose = Literal["linux", "payload"]


class KvmCannotBootLinuxError(QemuError):
    """KVM works here, but not well enough to boot a Linux guest."""


@dataclass(frozen=True)
class AccelChoice:
    """Which accelerator QEMU uses, what was asked for, and why."""

    name: Literal["kvm", "tcg"]
    requested: Accel
    reason: str

    @property
    def label(self) -> Phrase:
        return Phrase(N_("KVM (the CPU runs guest code)")) if self.name == "kvm" else \
            Phrase(N_("TCG (QEMU translates guest code)"))


def choose_accel(requested: Accel = "auto", purpose: Purpose = "linux",
                 report: host.HostReport | None = None) -> AccelChoice:
    """KVM where it can run the guest, else TCG — with the reason, from :mod:`labkit.host`'s verdict.

    ``purpose="linux"`` needs KVM that boots Linux (hardware virtualization);
    ``purpose="payload"`` (a bare-metal program) needs only a usable ``/dev/kvm``.
    """
    if requested not in ("auto", "kvm", "tcg"):
        raise InvalidOptionError(f"accel must be 'auto', 'kvm' or 'tcg', not {requested!r}",
                                 "use accel='auto' to let labkit choose")
    if requested == "tcg":
        return AccelChoice("tcg", requested, Phrase(N_("TCG was asked for: QEMU translates every guest instruction")))
    verdict = (report or host.inspect()).verdict
    if not verdict.usable:
        unusable = Phrase(N_("{verdict}: {reasons}"), verdict=verdict.label, reasons=joined(verdict.reasons, "; "))
        if requested == "kvm":
            raise KvmUnavailableError(Phrase(N_("KVM was asked for, but this host has {why}"), why=unusable),
                                      verdict.fix or Phrase(N_("use accel='tcg' (or 'auto')")))
        return AccelChoice("tcg", requested, Phrase(N_("no usable KVM ({why}), so QEMU emulates with TCG"),
                                                    why=unusable))
    if purpose == "payload" or verdict.boots_linux:
        return AccelChoice("kvm", requested, Phrase(N_("{verdict}: guest code runs on the CPU itself"),
                                                    verdict=verdict.label))
    why = Phrase(N_("{verdict}: the CPU offers no VT-x/AMD-V, so a Linux guest's kernel would run through "
                    "KVM's instruction emulator, which stops on instructions it lacks"), verdict=verdict.label)
    if requested == "kvm":
        raise KvmCannotBootLinuxError(Phrase(N_("KVM cannot boot a Linux guest on this host ({why})"), why=why),
                                      Phrase(N_("use accel='tcg' or 'auto'; a bare-metal payload does run under "
                                                "KVM here (labkit.lessons.payload)")))
    return AccelChoice("tcg", requested, Phrase(N_("{why}; QEMU emulates with TCG instead"), why=why))
