"""The raw KVM API from Python: ``/dev/kvm`` ioctls, a VM, its vCPUs and guests.

One job per module, from the bottom up:

- :mod:`~labkit.kvm.abi` — ``<linux/kvm.h>``: ioctl numbers, structures, exit reasons (pure data)
- :mod:`~labkit.kvm.fd` — a KVM file descriptor: ioctl, trace, guaranteed close
- :mod:`~labkit.kvm.system` — ``/dev/kvm``: API version, capabilities, supported CPUID, ``KVM_CREATE_VM``
- :mod:`~labkit.kvm.vm`, :mod:`~labkit.kvm.memory` — a VM and its memory slots (bounds-checked access)
- :mod:`~labkit.kvm.vcpu`, :mod:`~labkit.kvm.regs` — a vCPU: registers, ``KVM_RUN``, the kick
- :mod:`~labkit.kvm.exits` — typed exits decoded from ``struct kvm_run``
- :mod:`~labkit.kvm.modes` — GDT and page tables: real, protected and long mode
- :mod:`~labkit.kvm.devices` — serial port, MMIO counter, POST codes, debug exit, the bus
- :mod:`~labkit.kvm.guests` — the guest programs (``programs/*.S``)
- :mod:`~labkit.kvm.machine` — all of it as one VMM: step, run, budgets, crash dumps
- :mod:`~labkit.kvm.measure` — ring 0 vs ring 3 vs the host, and exits by who handles them (notebook 03 § 7)
- :mod:`~labkit.kvm.stats` — KVM's binary statistics of a VM or vCPU (``KVM_GET_STATS_FD``)
"""
