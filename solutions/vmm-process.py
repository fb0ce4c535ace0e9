my_qemu_pid = hosted_vm.pid  # the pid on your guest's line of: ps -eo pid,user,args | grep [q]emu-system
