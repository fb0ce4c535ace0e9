# mode_switch: start in 16-bit real mode and climb to 64-bit long mode, printing at each step.
#
# This is what a boot loader does before it can run a 64-bit kernel:
#   real mode  --(GDT, CR0.PE, far jump)-->  32-bit protected mode
#   protected  --(page tables, CR4.PAE, EFER.LME, CR0.PG, far jump)-->  64-bit long mode
.intel_syntax noprefix

# print MESSAGE on the serial port; the same bytes work in 16, 32 and 64-bit code
.macro print message
    mov esi, offset \message
    mov dx, SERIAL_PORT
1:  lodsb
    test al, al
    jz 2f
    out dx, al
    jmp 1b
2:
.endm

start:                          # 16-bit real mode
    print in_real
    cli
    lgdt [gdt_pointer]          # load the GDT below
    mov eax, cr0
    or eax, 1                   # CR0.PE: protection enable
    mov cr0, eax
    ljmp CODE32_SEL, offset protected_mode  # reload CS from the GDT: now 32-bit code

.code32
protected_mode:
    mov ax, DATA_SEL
    mov ds, ax
    mov es, ax
    mov ss, ax
    print in_protected
    # identity-map the first 2 MiB with one 2 MiB page: PML4[0] -> PDPT[0] -> PD[0]
    mov dword ptr [PML4_ADDR], PDPT_ADDR + 3        # present | writable
    mov dword ptr [PDPT_ADDR], PD_ADDR + 3
    mov dword ptr [PD_ADDR], 0x83                    # present | writable | 2 MiB page, address 0
    mov eax, PML4_ADDR
    mov cr3, eax
    mov eax, cr4
    or eax, 1 << 5              # CR4.PAE: 64-bit page-table entries
    mov cr4, eax
    mov ecx, 0xC0000080         # the EFER model-specific register
    rdmsr
    or eax, 1 << 8              # EFER.LME: long mode enable
    wrmsr
    mov eax, cr0
    or eax, 1 << 31             # CR0.PG: paging on; with LME set the CPU enters long mode
    mov cr0, eax
    ljmp CODE64_SEL, offset long_mode  # a 64-bit code segment: now 64-bit code

.code64
long_mode:
    print in_long
    hlt

.p2align 3
gdt:                            # the same selectors as the VMM's GDT; Accessed bits pre-set
    .quad 0                     # null descriptor
    .quad 0x00cf9b000000ffff    # 0x08: 32-bit code, base 0, 4 GiB
    .quad 0x00cf93000000ffff    # 0x10: data, base 0, 4 GiB
    .quad 0x00af9b000000ffff    # 0x18: 64-bit code (L=1)
gdt_pointer:
    .word gdt_pointer - gdt - 1 # limit
    .long gdt                   # base

in_real:      .asciz "real mode: 16-bit, no protection\n"
in_protected: .asciz "protected mode: 32-bit, segments from the GDT\n"
in_long:      .asciz "long mode: 64-bit, paging on\n"
