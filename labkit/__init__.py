"""labkit: the KVM Lab toolkit — inspect this host and run real guests.

Layers, bottom up: :mod:`labkit.host` (what is this machine), :mod:`labkit.kvm`
(the raw KVM API), :mod:`labkit.images` and :mod:`labkit.qemu` (a tiny Linux
guest under QEMU), :mod:`labkit.virt` (libvirt); :mod:`labkit.widgets` and
:mod:`labkit.cli` are the faces.  See docs/developing.md.
"""

__version__ = "0.1.0"
