exercise_cpu = "Skylake-Client"
cpu_boot = await qemu.boot(image, accel=accel, cpu=exercise_cpu, memory_mib=memory_mib, vcpus=vcpus)
