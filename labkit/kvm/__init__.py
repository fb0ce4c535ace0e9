"""The raw KVM API from Python: ``/dev/kvm`` ioctls, a VM, its vCPUs and guests."""
