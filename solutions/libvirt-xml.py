xml_size = exercise.target("libvirt-xml")
my_xml = f"""
<domain type="{dtype.type}">
  <name>by-hand</name>
  <memory unit="MiB">{xml_size.memory_mib}</memory>
  <vcpu>{xml_size.vcpus}</vcpu>
  <os>
    <type arch="x86_64" machine="pc">hvm</type>
    <kernel>{spec.kernel}</kernel>
    <initrd>{image.initrd}</initrd>
    <cmdline>{spec.cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
</domain>
"""
