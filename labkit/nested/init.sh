#!/bin/sh
# /nested-init: PID 1 of the emulated AMD-V machine (L1), run by busybox sh.
# It loads KVM (kvm_amd, nested=1) and the virtiofs stack from the kernel's own
# package, mounts the host's root read-only through virtiofs under a tmpfs
# overlay, and runs the job labkit wrote (its path is on the kernel command
# line as labkit.job=…) in that root.  labkit.nested reads the lines
#   LABKIT-NESTED READY | FAIL <what> | EXIT <status>
# on the console (ttyS0); the job's stdout/stderr go to ttyS1/ttyS2.
export PATH=/bin
dev=/dev                                          # /newroot/dev once the root is switched
say() { echo "LABKIT-NESTED $*" >$dev/ttyS0; }
fail() { say "FAIL $*"; dmesg | tail -n 5 >$dev/ttyS0; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in irqbypass kvm virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
              fuse virtiofs overlay; do
  insmod "/modules/$module.ko" || fail "insmod $module"
done
insmod /modules/kvm-amd.ko nested=1 || fail "insmod kvm-amd nested=1 (does the CPU show svm?)"
[ -c /dev/kvm ] || fail "kvm_amd loaded but /dev/kvm did not appear"
for word in $(cat /proc/cmdline); do
  case $word in labkit.job=*) job=${word#labkit.job=} ;; labkit.tty=*) tty=${word#labkit.tty=} ;; esac
done
mkdir -p /host /rw /newroot
mount -t virtiofs -o ro host /host || fail "mount -t virtiofs host (is virtiofsd serving?)"
mount -t tmpfs -o mode=0755 rw /rw
mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "overlay mount"
for fs in proc sys dev; do mount --move "/$fs" "/newroot/$fs"; done
dev=/newroot/dev
# /tmp stays the host's (a checkout, its venv or a notebook may live there), writable through the overlay;
# the host's lab run dirs in it are hidden under empty private tmpfs: their sockets and guests are the host's
for d in /newroot/tmp/labkit-*; do
  [ -d "$d" ] && [ ! -L "$d" ] || continue
  mount -t tmpfs -o "mode=0700,uid=$(stat -c %u "$d"),gid=$(stat -c %g "$d")" labkit-run "$d"
done
mount -t tmpfs -o mode=0755 run /newroot/run       # nor the host's pid files and daemon sockets
mkdir -p /newroot/dev/pts /newroot/dev/shm /newroot/run/labkit-nested
mount -t devpts -o mode=0620,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 shm /newroot/dev/shm
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup 2>$dev/null
cp "/host$job" /newroot/run/labkit-nested/job || fail "no job at $job"
cp /bin/busybox /newroot/run/labkit-nested/busybox
chmod 0666 /newroot/dev/kvm                       # this machine is the invoking user's alone
# L1's own /etc (3 MB, copied to RAM) and libvirt state (empty): overlayfs is undefined when a lower file
# changes under it, and the host rewrites these while L1 runs (accounts added by tests and by the lab, libvirt
# domains defined and undefined): seen in L1 as "Stale file handle" and "groupadd: cannot open /etc/group"
mkdir /rw/etc
cp -a /host/etc/. /rw/etc/ || fail "copy /etc into L1's memory"
mount --bind /rw/etc /newroot/etc
for d in /newroot/var/lib/libvirt /newroot/var/log/libvirt; do
  [ -d "$d" ] && mount -t tmpfs -o mode=0755 libvirt-state "$d"
done
rm -f /newroot/etc/passwd.lock /newroot/etc/group.lock /newroot/etc/shadow.lock /newroot/etc/gshadow.lock  # the host's
hostname labkit-l1
ip link set lo up
if [ -n "$tty" ]; then                            # labkit nested shell: one terminal, cooked by this tty
  io='</dev/ttyS1 >/dev/ttyS1 2>&1'
else
  stty -F $dev/ttyS1 raw -echo
  stty -F $dev/ttyS2 raw -echo
  io='</dev/null >/dev/ttyS1 2>/dev/ttyS2'
fi
# Stage 2 runs as PID 1 in the new root: switch_root, not chroot, so that the root is a real mount
# root (libvirt's per-domain /dev namespace, for one, finds no /dev/kvm under a chroot).
cat >/newroot/run/labkit-nested/stage2 <<STAGE2
bb=/run/labkit-nested/busybox
exec $io
echo "LABKIT-NESTED READY" >/dev/ttyS0
/bin/sh /run/labkit-nested/job
echo "LABKIT-NESTED EXIT \$?" >/dev/ttyS0
# poweroff drops what the serial ports have not sent yet; setting a tty mode waits for it (TCSADRAIN).  Bounded
# for a port nobody reads; far above a normal drain (milliseconds), since a loaded host slows L1 several times
for n in 1 2 0; do \$bb timeout 30 \$bb stty -F /dev/ttyS\$n -ixon 2>/dev/null; done
\$bb poweroff -f
STAGE2
exec switch_root /newroot /run/labkit-nested/busybox sh /run/labkit-nested/stage2
