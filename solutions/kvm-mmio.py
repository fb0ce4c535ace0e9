my_mmio_guest = r"""
.intel_syntax noprefix
start:
    mov edi, MMIO_COUNTER
    mov dword ptr [edi], 10   # store: the counter is 10
    mov eax, [edi]            # 10
    mov ebx, [edi]            # 11
    mov ecx, [edi]            # 12
    hlt
"""
