import mmap

from labkit.exercises import kernel as tasks

my_prediction = (tasks.fault_target() << 20) // mmap.PAGESIZE  # one first-touch fault per page
