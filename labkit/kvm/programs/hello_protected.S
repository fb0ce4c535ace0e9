# hello_protected: the same program in 32-bit protected mode.
#
# The VMM wrote a GDT into guest memory and loaded CS with a flat 32-bit code
# segment (base 0, limit 4 GiB), so registers and addresses are 32 bits wide.
.intel_syntax noprefix
start:
    mov esi, offset message   # esi: address of the next character
    mov dx, SERIAL_PORT       # dx: COM1's data register (0x3f8)
next:
    lodsb                     # al = byte at [esi], esi = esi + 1
    test al, al
    jz done
    out dx, al                # KVM_EXIT_IO
    jmp next
done:
    hlt                       # KVM_EXIT_HLT
message:
    .asciz "Hello from 32-bit protected mode!\n"
