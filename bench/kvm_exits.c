/* The C side of bench/kvm_exits.py: the same guest, the same ioctls, no Python.
 *
 * usage: kvm_exits IMAGE LOAD_ADDR ENTRY COUNT
 * Loads the flat real-mode IMAGE at LOAD_ADDR in 2 MiB of guest RAM, starts
 * the vCPU at ENTRY with RCX = COUNT, and serves KVM_EXIT_IO (the guest's
 * `out` to the serial port: the byte is appended to a buffer, as labkit's
 * serial device does) until KVM_EXIT_HLT.  Prints "<exits> <seconds>" for
 * the KVM_RUN loop alone.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE (2 << 20)

static void die(const char *what) { perror(what); exit(1); }

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s IMAGE LOAD_ADDR ENTRY COUNT\n", argv[0]); return 2; }
    unsigned long load = strtoul(argv[2], NULL, 0), entry = strtoul(argv[3], NULL, 0);
    unsigned long count = strtoul(argv[4], NULL, 0);

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("open /dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000) < 0) die("KVM_SET_TSS_ADDR");
    unsigned char *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) die("mmap");
    FILE *f = fopen(argv[1], "rb");
    if (!f) die(argv[1]);
    fread(mem + load, 1, MEM_SIZE - load, f);
    fclose(f);
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (unsigned long)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");

    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
    struct kvm_segment *segs[] = {&sregs.cs, &sregs.ds, &sregs.es, &sregs.fs, &sregs.gs, &sregs.ss};
    for (int i = 0; i < 6; i++) { segs[i]->base = 0; segs[i]->selector = 0; }
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
    struct kvm_regs regs = {.rip = entry, .rsp = 0x8000, .rflags = 2, .rcx = count};
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

    static unsigned char serial[1 << 24];
    size_t printed = 0;
    unsigned long exits = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
        exits++;
        if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x3f8) {
            size_t n = run->io.size * run->io.count;
            if (printed + n <= sizeof serial) memcpy(serial + printed, (char *)run + run->io.data_offset, n);
            printed += n;
        } else if (run->exit_reason == KVM_EXIT_HLT) {
            break;
        } else {
            fprintf(stderr, "unexpected exit reason %u\n", run->exit_reason);
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%lu %.9f\n", exits, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
