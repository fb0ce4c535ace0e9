# ring3: from 64-bit ring 0 (kernel mode) drop to ring 3 (user mode) with iretq.
#
# iretq pops RIP, CS, RFLAGS, RSP and SS.  Pushing a ring-3 code selector makes
# the CPU continue at `user` with privilege level 3: the way every kernel
# starts its first user process.  RFLAGS.IOPL = 3 lets ring 3 use `out`.
.intel_syntax noprefix
start:
    lea rsi, [rip + in_kernel]
    call print
    push USER_DS                # SS for ring 3
    lea rax, [rip + user_stack_top]
    push rax                    # RSP for ring 3
    push 0x3002                 # RFLAGS: IOPL = 3, bit 1 always set
    push USER_CS                # CS: a ring-3 64-bit code segment
    lea rax, [rip + user]
    push rax                    # RIP
    iretq                       # ... and the CPU is in ring 3

user:                           # ring 3 from here on: hlt or cli would fault
    lea rsi, [rip + in_user]
    call print
    mov al, 0
    out EXIT_PORT, al           # power off (the VMM's debug-exit port)

print:                          # print the string at rsi on the serial port
    mov dx, SERIAL_PORT
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  ret

in_kernel: .asciz "ring 0: kernel mode\n"
in_user:   .asciz "ring 3: user mode, entered with iretq\n"
.p2align 4
    .space 256
user_stack_top:
