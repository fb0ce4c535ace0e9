my_answers = {
    "Oracle VirtualBox": "type 2",  # an application on a desktop OS
    "VMware ESXi": "type 1",  # installed on the hardware itself
    "KVM": "type 1",  # "type 2" is accepted too, with its argument
}
my_kvm_argument = "kvm.ko makes the Linux kernel itself the hypervisor: its code runs in the kernel, in ring 0"
