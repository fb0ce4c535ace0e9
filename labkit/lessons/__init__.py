"""What the notebooks show, apart from the layers they teach: one module per lesson topic.

The infrastructure (host, kvm, qemu, virt, images …) is what any lab tool needs; these modules are the
demonstrations built on it, each for the notebook named here:

* :mod:`~labkit.lessons.kernel` — 01 (and 02's overcommit): the host kernel at work (processes, page faults,
  memory map, sockets, syscall cost, kernel threads, a module's license);
* :mod:`~labkit.lessons.native` — 01: the payload's loop run natively, bare metal vs VM;
* :mod:`~labkit.lessons.hypervisor` — 02: hypervisor types, the stack, carving a host into guests
  (and notebook 05's KVM stack, through :func:`labkit.virt.kvm_stack`);
* :mod:`~labkit.lessons.hosted` — 02: a guest's QEMU seen from the host (the idle -bios guest);
* :mod:`~labkit.lessons.payload` — 02 and 04: the 64 KiB bare-metal -bios payload under KVM and TCG.

Notebooks import them as ``from labkit.lessons import kernel, native``.
"""
