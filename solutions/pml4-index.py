my_pml4_index = (exercise_gva >> 39) & 511
