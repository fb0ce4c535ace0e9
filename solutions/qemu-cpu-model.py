# The generation that brought the wanted instructions but not yet the unwanted ones (Intel's models, no svm).
exercise_cpu = {("sse4_2", "aes"): "Nehalem", ("aes", "avx"): "Westmere",
                ("avx", "avx2"): "SandyBridge"}[cpu_exercise.target()]
cpu_boot = await qemu.boot(image, accel=accel, cpu=exercise_cpu, memory_mib=memory_mib, vcpus=vcpus)
