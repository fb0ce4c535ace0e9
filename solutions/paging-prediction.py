my_faster = "nested"   # nested paging: the CPU walks both levels itself, nothing for KVM to keep in step
my_factor = "over 5x"  # shadow: an exit to KVM for every fresh mapping the guest touches, each far dearer than a store
my_counter = "pf_fixed"  # the page faults KVM takes to fill its shadow tables
