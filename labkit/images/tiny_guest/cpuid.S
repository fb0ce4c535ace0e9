# labkit-cpuid: a Linux user program for the tiny guest.  It executes CPUID
# leaf 0x40000000, where a hypervisor puts its 12-byte vendor signature
# ("KVMKVMKVM", "TCGTCGTCGTCG", "Microsoft Hv", ...), and prints the 12 bytes
# as 24 hex digits and a newline.  The guest's /init calls it to learn, from
# the CPU itself, which hypervisor it runs under.  Linked at 0x400078: right
# after the 120 bytes of ELF and program header that labkit.images puts first.
.intel_syntax noprefix
_start:
    mov eax, 0x40000000
    cpuid                       # EBX, ECX, EDX = the signature
    lea rdi, [rip + signature]
    mov [rdi], ebx
    mov [rdi + 4], ecx
    mov [rdi + 8], edx
    lea rsi, [rip + text]
    lea r8, [rip + digits]
    xor ecx, ecx
hex:                            # text[2i], text[2i+1] = hex digits of signature[i]
    movzx eax, byte ptr [rdi + rcx]
    mov edx, eax
    shr eax, 4
    and edx, 15
    mov al, [r8 + rax]
    mov dl, [r8 + rdx]
    mov [rsi + rcx * 2], al
    mov [rsi + rcx * 2 + 1], dl
    inc ecx
    cmp ecx, 12
    jne hex
    mov byte ptr [rsi + 24], 10 # newline
    mov eax, 1                  # write(1, text, 25)
    mov edi, 1
    mov edx, 25
    syscall
    mov eax, 60                 # exit(0)
    xor edi, edi
    syscall
digits:    .ascii "0123456789abcdef"
signature: .space 12
text:      .space 25
