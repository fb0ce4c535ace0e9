# mmio_counter: talk to a device through memory-mapped I/O, in 32-bit protected mode.
#
# MMIO_COUNTER is a guest-physical address with no RAM behind it.  Each load
# or store there exits to the VMM (KVM_EXIT_MMIO), which plays a counter
# register: a store sets it, each load returns it and adds one.
.intel_syntax noprefix
start:
    mov ebx, MMIO_COUNTER     # the device register's address
    mov dword ptr [ebx], 41   # store: KVM_EXIT_MMIO (write 41)
    mov eax, [ebx]            # load:  KVM_EXIT_MMIO (read), the VMM answers 41
    mov ecx, [ebx]            # load:  the VMM answers 42
    mov dword ptr [0x7000], 7 # an ordinary store to RAM: no exit at all
    hlt
