# hello_long: the same program in 64-bit long mode.
#
# The VMM built page tables that map every guest-virtual address to the same
# guest-physical address (an identity map), switched paging on, and loaded a
# 64-bit code segment.  Addresses are now 64-bit and go through the MMU.
.intel_syntax noprefix
start:
    lea rsi, [rip + message]  # rsi: address of the next character (relative to rip)
    mov dx, SERIAL_PORT       # dx: COM1's data register (0x3f8)
next:
    lodsb                     # al = byte at [rsi], rsi = rsi + 1
    test al, al
    jz done
    out dx, al                # KVM_EXIT_IO
    jmp next
done:
    hlt                       # KVM_EXIT_HLT
message:
    .asciz "Hello from 64-bit long mode!\n"
