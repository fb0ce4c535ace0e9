# labkit's bare-metal payload: a 64 KiB firmware image for `qemu -bios`.
#
# The vCPU starts where every x86 CPU starts, at the reset vector (linear
# 0xFFFFFFF0, the last 16 bytes of this image), in 16-bit real mode.  The
# payload then does what a real firmware/kernel does to reach 64-bit code:
# real mode -> protected mode -> long mode (with page tables it writes to RAM),
# prints on the serial port (COM1, I/O port 0x3F8), runs a counting loop of
# ITERATIONS steps in ring 0 or -- after an iretq -- in ring 3 (user mode),
# timed with the CPU's own time-stamp counter (RDTSC, printed in hex),
# and tells QEMU to exit by writing to the isa-debug-exit device (port 0xF4):
# QEMU then exits with status (value << 1) | 1 = 33.
#
# labkit.lessons.payload prepends `.set ITERATIONS, N` and `.set RING, 0|3`.
# Assembled at 0xF0000, where QEMU maps the image below 1 MiB (`rom`).  This is ROM:
# everything written at run time (page tables, stacks) lives in RAM below it.
.intel_syntax noprefix
.set PML4, 0x1000                # page tables: 0x1000-0x3FFF
.set KERNEL_STACK, 0x7000
.set USER_STACK, 0x9000
.set COM1, 0x3F8
.set EXIT_PORT, 0xF4
.set EXIT_OK, 0x10

.code16
rom:                             # image offset 0 = linear 0xF0000 = F000:0000
start16:
    cli
    lgdt cs:[gdtr - rom]         # 16-bit offset within the F000 segment
    mov eax, cr0
    or eax, 1                    # CR0.PE: protected mode
    mov cr0, eax
    .byte 0x66, 0xEA             # jmp far 0x08:start32 (32-bit offset)
    .long start32
    .word 0x08

.code32
start32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, KERNEL_STACK
    mov edi, PML4                # identity-map the first 2 MiB with one large page
    xor eax, eax
    mov ecx, 3 * 4096 / 4
    rep stosd
    mov dword ptr [PML4], PML4 + 0x1000 + 7           # present, writable, user
    mov dword ptr [PML4 + 0x1000], PML4 + 0x2000 + 7
    mov dword ptr [PML4 + 0x2000], 0x87               # 2 MiB page at 0, user
    mov eax, cr4
    or eax, 1 << 5               # CR4.PAE
    mov cr4, eax
    mov eax, PML4
    mov cr3, eax
    mov ecx, 0xC0000080          # EFER
    rdmsr
    or eax, 1 << 8               # EFER.LME: long mode enable
    wrmsr
    mov eax, cr0
    or eax, 1 << 31              # CR0.PG: paging on -> long mode active
    mov cr0, eax
    .byte 0xEA                   # jmp far 0x18:start64
    .long start64
    .word 0x18

.code64
start64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    lea rsi, [rip + hello]
    call print
.if RING == 3
    push 0x23                    # SS: user data, RPL 3
    push USER_STACK              # RSP
    push 0x3002                  # RFLAGS: IOPL 3 (ring 3 may use in/out), reserved bit 1
    push 0x2B                    # CS: user code, RPL 3
    lea rax, [rip + user]
    push rax                     # RIP
    iretq                        # "return" into ring 3
user:
    lea rsi, [rip + in_ring3]
    call print
.endif
    lea rsi, [rip + loop_start]
    call print
    rdtsc                        # EDX:EAX = time-stamp counter
    shl rdx, 32
    or rax, rdx
    mov r12, rax
    mov rcx, ITERATIONS
count:
    dec rcx
    jnz count
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, r12                 # TSC cycles the loop took
    mov r12, rax
    lea rsi, [rip + loop_end]
    call print
    mov rax, r12
    call print_hex
    lea rsi, [rip + newline]
    call print
    mov dx, EXIT_PORT
    mov al, EXIT_OK
    out dx, al                   # QEMU exits here
    jmp $

print:                           # write the NUL-terminated string at RSI to COM1
    mov dx, COM1
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:  ret

print_hex:                       # write RAX to COM1 as 16 hex digits
    mov rbx, rax
    mov rcx, 16
    mov dx, COM1
1:  rol rbx, 4
    mov al, bl
    and al, 15
    add al, '0'
    cmp al, '9'
    jbe 2f
    add al, 'a' - '9' - 1
2:  out dx, al
    dec rcx
    jnz 1b
    ret

hello:      .asciz "LABKIT-PAYLOAD long mode, ring 0\n"
in_ring3:   .asciz "LABKIT-PAYLOAD ring 3\n"
loop_start: .asciz "LABKIT-PAYLOAD loop start\n"
loop_end:   .asciz "LABKIT-PAYLOAD loop end, TSC cycles: "
newline:    .asciz "\n"

.balign 8
gdt:                             # Accessed bits preset: the GDT is in ROM, the CPU cannot set them
    .quad 0
    .quad 0x00CF9B000000FFFF     # 0x08 ring 0 code, 32-bit
    .quad 0x00CF93000000FFFF     # 0x10 ring 0 data
    .quad 0x00AF9B000000FFFF     # 0x18 ring 0 code, 64-bit
    .quad 0x00CFF3000000FFFF     # 0x20 ring 3 data
    .quad 0x00AFFB000000FFFF     # 0x28 ring 3 code, 64-bit
gdtr:
    .word gdtr - gdt - 1
    .long gdt

.org 0xFFF0                      # the reset vector: linear 0xFFFFFFF0 = F000:FFF0
    .byte 0xEA                   # jmp far F000:start16
    .word start16 - rom
    .word 0xF000
.org 0x10000                     # QEMU wants a -bios image in whole 64 KiB
