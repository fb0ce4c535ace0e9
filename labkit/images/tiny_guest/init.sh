#!/bin/sh
# /init of labkit's tiny guest (busybox sh).  The kernel runs it as PID 1.
# It looks at the machine from the inside, prints ONE line
#   LABKIT-REPORT [NONCE ]{json}
# that labkit.images.parse_report() reads, runs the learner's command if the
# image has one (/labkit/command), and powers the machine off.
# Every program started costs time in an emulated guest, so one awk does most of the work.
export PATH=/bin
# The boot's nonce (labkit.images.with_nonce): read, then deleted before the
# learner's command runs, so that command cannot print our markers itself.
nonce=
if [ -f /labkit/nonce ]; then read -r nonce </labkit/nonce; rm -f /labkit/nonce; fi
tag=${nonce:+ $nonce}
mount -t proc proc /proc
read -r uptime _ </proc/uptime          # the guest's clock: seconds since its kernel started
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# awk must start no programs itself: busybox runs it as a fork of this shell
# (a NOEXEC applet), and a child it started could interrupt its write to the
# console, losing a piece of the report (measured: 5 of 120 boots did).
/bin/labkit-cpuid >/tmp/cpuid         # CPUID leaf 0x40000000: the hypervisor names itself
dmesg >/tmp/dmesg                     # what the guest kernel concluded about its platform
awk -v uptime="$uptime" -v tag="$tag" '
function slurp(file,   line, text) {          # a whole file as one line
  while ((getline line < file) > 0) text = text (text == "" ? "" : " ") line
  close(file); return text
}
function str(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); gsub(/\t/, " ", s); return "\"" s "\"" }
BEGIN {
  while ((getline line < "/proc/cpuinfo") > 0) {
    split(line, kv, /[ \t]*: ?/)
    if (kv[1] == "processor") cpus++
    else if (!(kv[1] in cpu)) cpu[kv[1]] = substr(line, index(line, ":") + 2)
  }
  while ((getline line < "/proc/meminfo") > 0) if (line ~ /^MemTotal:/) { split(line, m, " "); mem = m[2] }
  getline sig < "/tmp/cpuid"
  while ((getline line < "/tmp/dmesg") > 0)
    if (line ~ /Hypervisor detected/) { sub(/.*detected: */, "", line); hv = line }
  printf "LABKIT-REPORT%s {\"v\":1,\"kernel\":%s,\"machine\":%s,\"cpus\":%d,\"mem_kib\":%d,", \
    tag, str(slurp("/proc/sys/kernel/osrelease")), str(slurp("/proc/sys/kernel/arch")), cpus, mem
  printf "\"vendor\":%s,\"model\":%s,\"flags\":%s,\"cpuid_40000000\":%s,\"kernel_hypervisor\":%s,", \
    str(cpu["vendor_id"]), str(cpu["model name"]), str(cpu["flags"]), str(sig), str(hv)
  getline now < "/proc/uptime"; split(now, clock, " ")   # the work of /init so far: report_uptime_s - uptime_s
  printf "\"clocksource\":%s,\"uptime_s\":%s,\"report_uptime_s\":%s,\"cmdline\":%s}\n", \
    str(slurp("/sys/devices/system/clocksource/clocksource0/current_clocksource")), uptime, clock[1], \
    str(slurp("/proc/cmdline"))
}'
if [ -f /labkit/command ]; then
  echo "LABKIT-COMMAND-BEGIN$tag"
  sh /labkit/command </dev/null 2>&1
  echo "LABKIT-COMMAND-END$tag $?"
fi
echo "LABKIT-POWEROFF"
# poweroff -f drops what the UART has not sent yet: setting a tty mode waits for it (TCSADRAIN).  Seen on
# a loaded host and under nested KVM, where each transmit interrupt is slow (about 1 KiB a second inside
# the emulated AMD-V machine): the report line was cut short.  Bounded, since a drain that never ended was
# seen once under TCG; the bound is far above the slowest drain measured, and costs nothing otherwise.
timeout 10 stty -F /dev/console -ixon 2>/dev/null
# microvm without ACPI (labkit's 1-vCPU guest under TCG) has no power-off device: there the kernel would only
# halt.  The guest resets itself instead (reboot=t: a triple fault), which QEMU's -no-reboot turns into its exit.
if [ -d /sys/firmware/acpi ]; then poweroff -f; else reboot -f; fi
