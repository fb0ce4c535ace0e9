my_ring3_guest = r"""
.intel_syntax noprefix
start:
    push USER_DS
    lea rax, [rip + user_stack_top]
    push rax
    push 0x3002
    push USER_CS
    lea rax, [rip + user]
    push rax
    iretq
user:
    mov dx, SERIAL_PORT
    mov al, CHARACTER
    out dx, al
    mov al, 0
    out EXIT_PORT, al
.p2align 4
    .space 256
user_stack_top:
"""
