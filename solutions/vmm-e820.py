from labkit.exercises.vmm import memory_mib

my_e820 = [
    (0x0, 0x9FC00, 1),                                    # usable RAM below the EBDA (640 KiB)
    (0x9FC00, 0x100000 - 0x9FC00, 2),                     # the legacy hole up to 1 MiB: reserved
    (0x100000, (memory_mib() << 20) - 0x100000, 1),       # usable RAM from 1 MiB to the top
]
