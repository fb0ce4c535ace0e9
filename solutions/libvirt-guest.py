size = exercise.target("libvirt-guest")
exercise_spec = virt.DomainSpec.for_image("exercise", image, memory_mib=size.memory_mib, vcpus=size.vcpus,
                                          domain_type=dtype.type)
my_domain = conn.define(exercise_spec)           # virsh define
my_domain.start()                                # virsh start
exercise_report = my_domain.wait_for_report(timeout=boot_timeout_s)
