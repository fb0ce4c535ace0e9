# compute_loop: count RDI down to zero, in ring 0 (RSI = 0) or in ring 3 (RSI = 1).
#
# The loop itself touches no device, so KVM has no reason to exit while it
# runs.  Port 0x80 marks its start and end: the VMM timestamps both exits.
.intel_syntax noprefix
start:
    test rsi, rsi
    jz measure                  # stay in ring 0
    push USER_DS                # else drop to ring 3 with iretq (see ring3.S)
    lea rax, [rip + user_stack_top]
    push rax
    push 0x3002                 # IOPL = 3: ring 3 may still use out
    push USER_CS
    lea rax, [rip + measure]
    push rax
    iretq

measure:
    out POST_PORT, al           # mark: start
    mov rcx, rdi
spin:
    dec rcx                     # the work: two instructions per iteration
    jnz spin
    out POST_PORT, al           # mark: end
    out EXIT_PORT, al           # power off

.p2align 4
    .space 256
user_stack_top:
