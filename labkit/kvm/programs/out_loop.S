# out_loop: RCX times `out` to the serial port, then halt — nothing but VM exits.
#
# The benchmark of exit round trips: each `out` leaves the guest, the VMM
# handles it and re-enters with KVM_RUN.  Loop count: ECX, set by the VMM.
.intel_syntax noprefix
start:
    mov dx, SERIAL_PORT
    mov al, '.'
again:
    out dx, al
    dec ecx
    jnz again
    hlt
