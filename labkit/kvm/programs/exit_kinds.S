# exit_kinds: a loop, then cpuid, out and hlt — which of them leave the guest, and who handles each?
#
# With VT-x/AMD-V the loop runs on the CPU with no exit at all; each cpuid
# exits to KVM, which answers it inside the kernel; each out and the hlt exit
# all the way to the VMM (KVM_RUN returns).  The vCPU's statistics
# (KVM_GET_STATS_FD) count both kinds; the VMM sees only the second.
.intel_syntax noprefix
start:
    mov rcx, rdi                # the loop count (the VMM sets rdi)
spin:
    dec rcx
    jnz spin
    mov r8, 3
again:
    xor eax, eax
    cpuid                       # leaf 0: the CPU's vendor
    out POST_PORT, al
    dec r8
    jnz again
    hlt
