from labkit.exercises import guest_programs as _task

_value, _order = _task.mmio_target()
my_mmio_guest = f"""
.intel_syntax noprefix
start:
    mov edi, MMIO_COUNTER
    mov dword ptr [edi], {_value}   # store: the counter is {_value}
    mov {_order[0]}, [edi]            # {_value}
    mov {_order[1]}, [edi]            # {_value + 1}
    mov {_order[2]}, [edi]            # {_value + 2}
    hlt
"""
