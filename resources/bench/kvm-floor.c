/* kvm-floor: the least a KVM VMM does to run a guest to its first exit, as
 * the floor VMM start-up is compared with: open /dev/kvm, create a VM, give
 * it 64 MiB of lazily backed memory and one vCPU, run the vCPU until its
 * first exit (the guest does `out 0xf4, al` in real mode at 0x1000), and
 * close everything. Exits 0 when that first exit was the expected port
 * write, 1 with a message otherwise. Build: cc -O2 -o kvm-floor kvm-floor.c */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define MEM_SIZE (64UL << 20)
#define CODE_ADDR 0x1000

static int fail(const char *what) {
    perror(what);
    return 1;
}

int main(void) {
    /* out 0xf4, al ; hlt */
    static const unsigned char code[] = {0xe6, 0xf4, 0xf4};
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) return fail("open /dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0UL);
    if (vm < 0) return fail("KVM_CREATE_VM");
    void *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return fail("mmap guest memory");
    memcpy((char *)mem + CODE_ADDR, code, sizeof code);
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (unsigned long)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) return fail("KVM_SET_USER_MEMORY_REGION");
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0UL);
    if (vcpu < 0) return fail("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < 0) return fail("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) return fail("mmap kvm_run");
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) return fail("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) return fail("KVM_SET_SREGS");
    struct kvm_regs regs = {.rip = CODE_ADDR, .rflags = 2};
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) return fail("KVM_SET_REGS");
    if (ioctl(vcpu, KVM_RUN, 0) < 0) return fail("KVM_RUN");
    int ok = run->exit_reason == KVM_EXIT_IO && run->io.port == 0xf4;
    if (!ok) fprintf(stderr, "kvm-floor: first exit reason %u, not the port write\n", run->exit_reason);
    munmap(run, run_size);
    close(vcpu);
    close(vm);
    munmap(mem, MEM_SIZE);
    close(kvm);
    return ok ? 0 : 1;
}
