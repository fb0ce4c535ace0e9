exercise_vcpus = 2         # two virtual CPUs
exercise_command = "nproc"  # the guest counts the CPUs it sees
exercise_boot = await qemu.boot(image, accel=ACCEL, memory_mib=MEMORY_MIB, vcpus=exercise_vcpus,
                                command=exercise_command)
