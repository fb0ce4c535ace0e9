my_disk_xml = f"""<disk type='file' device='disk'>
  <driver name='qemu' type='qcow2'/>
  <source file='{vol.path}'/>
  <target dev='vdb' bus='virtio'/>
</disk>"""
