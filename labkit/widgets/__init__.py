"""ipywidgets views of labkit results, one module per layer (host, kvm, qemu, virt).

Views are faces only: they draw what labkit functions return and call labkit
on input, so everything they show is reachable (and tested) without them.
"""
