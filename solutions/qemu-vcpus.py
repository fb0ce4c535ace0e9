exercise_vcpus = 2         # two virtual CPUs
exercise_command = "nproc"  # the guest counts the CPUs it sees
exercise_boot = await qemu.boot(image, accel=accel, memory_mib=memory_mib, vcpus=exercise_vcpus,
                                command=exercise_command)
