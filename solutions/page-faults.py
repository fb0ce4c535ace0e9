import mmap

my_prediction = (10 << 20) // mmap.PAGESIZE  # 10 MiB, one first-touch fault per page
