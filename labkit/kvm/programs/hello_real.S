# hello_real: print a line on the serial port from 16-bit real mode, then halt.
#
# The CPU starts here just as it leaves reset: 16-bit code, no protection,
# addresses are segment * 16 + offset (the VMM set all segments to 0).
.intel_syntax noprefix
start:
    mov si, offset message    # si: address of the next character
    mov dx, SERIAL_PORT       # dx: COM1's data register (0x3f8)
next:
    lodsb                     # al = byte at [si], si = si + 1
    test al, al               # the message ends with a 0 byte
    jz done
    out dx, al                # exit to the VMM (KVM_EXIT_IO): it prints al
    jmp next
done:
    hlt                       # exit to the VMM (KVM_EXIT_HLT): the guest is finished
message:
    .asciz "Hello from 16-bit real mode!\n"
