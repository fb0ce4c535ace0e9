"""Notebook 03's device exercise: the learner writes, in Python, the MMIO device a guest talks to.

The guest (:data:`GUEST`, fixed) stores three numbers to the device's INPUT
register and loads its RESULT register after each; the learner's
:class:`~labkit.kvm.devices.Device` subclass answers those ``KVM_EXIT_MMIO``
exits.  The formula RESULT = m × INPUT + k differs per learner
(:func:`formula`).  :func:`check_device` runs the guest with the learner's
device on the VMM's bus and judges the values the guest's registers received.
"""

from __future__ import annotations

from labkit import exercises
from labkit.errors import LabkitError
from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.i18n import noop as N_
from labkit.kvm import devices, guests
from labkit.kvm.errors import KvmGuestError
from labkit.kvm.machine import Machine

NAME = "kvm-mmio-device"

#: The device's guest-physical address (no RAM there; next to the lab's MMIO counter) and its two registers.
DEVICE_ADDR = devices.MMIO_COUNTER + 0x1000
INPUT, RESULT = 0, 4

#: The formulas a learner may get: RESULT = m × INPUT + k.
FORMULAS: tuple[tuple[int, int], ...] = tuple((m, k) for m in (2, 3, 5, 7) for k in (1, 4, 6, 9))

#: The numbers the guest stores, and the registers that receive each RESULT.
INPUTS = (5, 12, 100)
REGISTERS = ("eax", "ebx", "ecx")

GUEST = """\
.intel_syntax noprefix
# 32-bit protected mode: ask the device three questions, keep the answers in eax, ebx and ecx.
start:
    mov edi, DEVICE_ADDR
    mov dword ptr [edi + INPUT], 5      # store to INPUT: KVM_EXIT_MMIO (write)
    mov eax, [edi + RESULT]             # load RESULT:    KVM_EXIT_MMIO (read), the device answers
    mov dword ptr [edi + INPUT], 12
    mov ebx, [edi + RESULT]
    mov dword ptr [edi + INPUT], 100
    mov ecx, [edi + RESULT]
    hlt
"""

STARTER = '''\
from labkit.exercises.mmio_device import DEVICE_ADDR, INPUT, RESULT
from labkit.kvm.devices import Device


class MyDevice(Device):
    """The calculator at DEVICE_ADDR: the guest stores a number to INPUT, then loads RESULT."""

    name = "calculator"

    def __init__(self) -> None:
        self.mmio = range(DEVICE_ADDR, DEVICE_ADDR + 8)  # the guest-physical addresses it answers

    def mmio_write(self, address: int, data: bytes) -> None:
        """The guest stored `data` (little-endian bytes) at `address`."""

    def mmio_read(self, address: int, size: int) -> bytes:
        """The guest loads `size` bytes from `address`: return them."""
        return bytes(size)
'''


def formula() -> tuple[int, int]:
    """This learner's device: RESULT = m × INPUT + k, as (m, k)."""
    return exercises.target(NAME, FORMULAS)


def task() -> str:
    """The learner's formula in words, for the notebook to print."""
    m, k = formula()
    return _("your device: RESULT = {m} × INPUT + {k} (INPUT at DEVICE_ADDR + {input}, RESULT at DEVICE_ADDR + "
             "{result}, DEVICE_ADDR = {address:#x})").format(m=m, k=k, input=INPUT, result=RESULT,
                                                            address=DEVICE_ADDR)


HINTS = (
    N_("each guest access arrives as an absolute guest-physical address: address - DEVICE_ADDR tells INPUT (+0) from "
      "RESULT (+4)"),
    N_("a store's data is little-endian bytes: int.from_bytes(data, 'little'); keep the number on self for the next "
      "load"),
    N_("a load wants exactly `size` bytes back: value.to_bytes(size, 'little')"),
)


def _build(answer: object) -> devices.Device | Feedback:
    """The learner's device: their class instantiated (or their instance), or why not."""
    try:
        device = answer() if isinstance(answer, type) else answer
    except Exception as exc:  # the learner's constructor: any error is feedback, not a traceback
        return Feedback(False, _("MyDevice() raised {error}").format(error=f"{type(exc).__name__}: {exc}"), HINTS)
    if not isinstance(device, devices.Device):
        return Feedback(False, _("pass your device class, MyDevice (got a {type})").format(
            type=type(answer).__name__), _("it must be a subclass of Device"))
    if DEVICE_ADDR not in device.mmio or DEVICE_ADDR + RESULT not in device.mmio:
        return Feedback(False, _("your device's mmio range {range} does not cover INPUT and RESULT").format(
            range=device.mmio), "self.mmio = range(DEVICE_ADDR, DEVICE_ADDR + 8)")
    return device


@exercise(NAME)
def check_device(answer: object) -> Feedback:
    """Run :data:`GUEST` with the learner's device on the bus: did eax, ebx and ecx get m × input + k?"""
    device = _build(answer)
    if isinstance(device, Feedback):
        return device
    m, k = formula()
    try:
        with Machine(guests.build(GUEST, "protected", DEVICE_ADDR=DEVICE_ADDR, INPUT=INPUT, RESULT=RESULT),
                     "protected", devices=(device,)) as machine:
            result = machine.run(max_exits=100, timeout=5.0)
    except KvmGuestError as exc:
        return Feedback(False, exc.summary, HINTS)
    except LabkitError as exc:
        return Feedback(False, exc.what, HINTS)
    except Exception as exc:  # the learner's handler ran inside the VMM: its error is feedback, not a traceback
        return Feedback(False, _("your device raised {error} while answering the guest").format(
            error=f"{type(exc).__name__}: {exc}"), HINTS)
    want = [m * x + k for x in INPUTS]
    got = [getattr(result.registers, "r" + name[1:]) & 0xFFFF_FFFF for name in REGISTERS]
    if got != want or result.exits.get("KVM_EXIT_MMIO") != 2 * len(INPUTS):
        return Feedback(False, _("the guest's loads got {got}; expected {want}").format(
            got=", ".join(f"{r} = {v}" for r, v in zip(REGISTERS, got, strict=True)),
            want=", ".join(f"{r} = {v}" for r, v in zip(REGISTERS, want, strict=True))), HINTS)
    return Feedback(True, _("6 MMIO exits answered by your Python code: the guest stored 5, 12, 100 and loaded "
                            "{want} — a device is nothing but the VMM's answers to exits").format(
                                want=", ".join(str(v) for v in want)))
