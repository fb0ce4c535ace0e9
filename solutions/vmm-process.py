# !ps -eo pid,user,args | grep [q]emu-system   -> the line whose -name has 'hosted' and this user
my_qemu_pid = hosted_vm.pid
