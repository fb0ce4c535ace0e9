my_answers = {
    "Oracle VirtualBox": "type 2",  # an application on a desktop OS
    "VMware ESXi": "type 1",  # installed on the hardware itself
    "KVM": "type 1",  # the Linux kernel itself becomes the hypervisor
}
