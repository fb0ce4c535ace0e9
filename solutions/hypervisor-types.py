from pathlib import Path

from labkit.exercises import hypervisor as classify

my_answers = {name: classify.SETTLED.get(name, "type 1") for name in classify.names()}  # KVM: type 1
# the kvm line of /proc/misc, as `grep -w kvm /proc/misc` printed it in § 3: KVM is a device of this kernel
my_kvm_evidence = next(line for line in Path("/proc/misc").read_text().splitlines() if line.split()[1:] == ["kvm"])
