/*
 * kvm-probe - proof that an aarch64 VMM can run guests under the KVM of the
 * arm64 sandbox (L1): the smallest VMM that creates a VM and a vCPU, runs a
 * few guest instructions to an MMIO exit and ends on a PSCI SYSTEM_OFF.
 *
 *   KVM_CREATE_VM, KVM_ARM_PREFERRED_TARGET, KVM_CREATE_VCPU,
 *   KVM_ARM_VCPU_INIT (with PSCI 0.2), KVM_SET_ONE_REG (PC, x1, x3), KVM_RUN
 *
 * The guest payload (below, at GUEST_RAM) stores the byte 'K' to MMIO_ADDR
 * (an unbacked guest-physical address: a KVM_EXIT_MMIO), then stores '.' to
 * MMIO_ADDR+1 N more times (N exits, timed: the cost of one MMIO exit round
 * trip to this process and back), then issues `hvc #0` with x0 = PSCI
 * SYSTEM_OFF, which KVM's in-kernel PSCI turns into KVM_EXIT_SYSTEM_EVENT
 * (SHUTDOWN). It also checks that an in-kernel GICv3 can be created
 * (KVM_CREATE_DEVICE with KVM_CREATE_DEVICE_TEST), which the arm64 back end
 * of dmavm needs.
 *
 * Prints one machine-readable line (values in the usual DMAVM key=value form):
 *   DMAVM probe=ok api=12 ipa_bits=40 target=T vgic_v3=1 mmio_addr=0x9000000
 *         mmio_data=0x4b mmio_exits=N+1 system_event=shutdown exit_us=U
 * and exits 0 when everything above happened in that order, else prints
 * `DMAVM probe=fail step=... errno=...` and exits 1.
 *
 * Built static by resources/testbed-arm64/build-l1.sh:
 *   aarch64-linux-gnu-gcc -O2 -static -o kvm-probe kvm-probe.c
 * usage: kvm-probe [N]   (N timed MMIO exits, default 200)
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define GUEST_RAM 0x40000000UL /* where the payload runs (virt's RAM base) */
#define GUEST_RAM_SIZE 0x10000UL
#define MMIO_ADDR 0x09000000UL /* unbacked: every access exits */
#define PSCI_SYSTEM_OFF 0x84000008UL

/* The guest: x1 = MMIO_ADDR, x3 = N (both set through KVM_SET_ONE_REG). */
extern const unsigned char payload_start[], payload_end[];
__asm__(".pushsection .rodata\n"
	".balign 4\n"
	".global payload_start\n"
	"payload_start:\n"
	"	mov	w2, #0x4b\n" /* 'K' */
	"	strb	w2, [x1]\n" /* first MMIO exit */
	"	mov	w2, #0x2e\n" /* '.' */
	"1:	strb	w2, [x1, #1]\n" /* N timed MMIO exits */
	"	subs	x3, x3, #1\n"
	"	b.ne	1b\n"
	"	movz	x0, #0x0008\n"
	"	movk	x0, #0x8400, lsl #16\n" /* PSCI SYSTEM_OFF */
	"	hvc	#0\n"
	"2:	b	2b\n"
	".global payload_end\n"
	"payload_end:\n"
	".popsection\n");

static const char *step = "start";

static void fail(const char *what)
{
	printf("DMAVM probe=fail step=%s errno=%d (%s: %s)\n", step, errno, what, strerror(errno));
	exit(1);
}

static void failx(const char *what)
{
	printf("DMAVM probe=fail step=%s (%s)\n", step, what);
	exit(1);
}

/* KVM_REG_ARM64 core register id of the 64-bit field at byte offset `off`
 * in struct kvm_regs */
static uint64_t core_reg(size_t off)
{
	return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | (off / sizeof(uint32_t));
}

static void set_reg(int vcpu, uint64_t id, uint64_t value)
{
	struct kvm_one_reg reg = { .id = id, .addr = (uint64_t)(uintptr_t)&value };
	if (ioctl(vcpu, KVM_SET_ONE_REG, &reg) < 0)
		fail("KVM_SET_ONE_REG");
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 0) : 200;
	if (n < 1)
		n = 1;
	setvbuf(stdout, NULL, _IONBF, 0);

	step = "open";
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		fail("open /dev/kvm");
	int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION)
		failx("unexpected KVM_GET_API_VERSION");
	int ipa_bits = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_ARM_VM_IPA_SIZE);

	step = "create_vm";
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		fail("KVM_CREATE_VM");

	step = "memory";
	void *ram = mmap(NULL, GUEST_RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED)
		fail("mmap");
	memcpy(ram, payload_start, (size_t)(payload_end - payload_start));
	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.guest_phys_addr = GUEST_RAM,
		.memory_size = GUEST_RAM_SIZE,
		.userspace_addr = (uint64_t)(uintptr_t)ram,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		fail("KVM_SET_USER_MEMORY_REGION");

	step = "vgic_v3";
	struct kvm_create_device gic = { .type = KVM_DEV_TYPE_ARM_VGIC_V3, .flags = KVM_CREATE_DEVICE_TEST };
	int vgic_v3 = ioctl(vm, KVM_CREATE_DEVICE, &gic) == 0;

	step = "preferred_target";
	struct kvm_vcpu_init init;
	memset(&init, 0, sizeof(init));
	if (ioctl(vm, KVM_ARM_PREFERRED_TARGET, &init) < 0)
		fail("KVM_ARM_PREFERRED_TARGET");
	init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;

	step = "create_vcpu";
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		fail("KVM_CREATE_VCPU");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run))
		fail("KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		fail("mmap kvm_run");

	step = "vcpu_init";
	if (ioctl(vcpu, KVM_ARM_VCPU_INIT, &init) < 0)
		fail("KVM_ARM_VCPU_INIT");

	step = "set_regs";
	set_reg(vcpu, core_reg(offsetof(struct kvm_regs, regs.pc)), GUEST_RAM);
	set_reg(vcpu, core_reg(offsetof(struct kvm_regs, regs.regs[1])), MMIO_ADDR);
	set_reg(vcpu, core_reg(offsetof(struct kvm_regs, regs.regs[3])), (uint64_t)n);

	step = "run";
	long exits = 0;
	unsigned first_data = 0;
	uint64_t first_addr = 0;
	double t0 = 0, t1 = 0;
	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			fail("KVM_RUN");
		}
		if (run->exit_reason == KVM_EXIT_MMIO) {
			if (!run->mmio.is_write || run->mmio.len != 1)
				failx("MMIO exit is not a 1-byte write");
			if (exits == 0) {
				first_addr = run->mmio.phys_addr;
				first_data = run->mmio.data[0];
				if (first_addr != MMIO_ADDR || first_data != 'K')
					failx("first MMIO exit has the wrong address or data");
				t0 = now_us();
			} else if (run->mmio.phys_addr != MMIO_ADDR + 1) {
				failx("timed MMIO exit at the wrong address");
			}
			exits++;
			if (exits == n + 1)
				t1 = now_us();
			continue;
		}
		if (run->exit_reason == KVM_EXIT_SYSTEM_EVENT) {
			if (run->system_event.type != KVM_SYSTEM_EVENT_SHUTDOWN)
				failx("system event is not a shutdown");
			break;
		}
		printf("DMAVM probe=fail step=run exit_reason=%u after %ld MMIO exits\n", run->exit_reason,
		       exits);
		return 1;
	}
	if (exits != n + 1)
		failx("wrong number of MMIO exits before SYSTEM_OFF");

	printf("DMAVM probe=ok api=%d ipa_bits=%d target=%u vgic_v3=%d mmio_addr=0x%lx mmio_data=0x%x "
	       "mmio_exits=%ld system_event=shutdown exit_us=%.1f\n",
	       api, ipa_bits, init.target, vgic_v3, (unsigned long)first_addr, first_data, exits,
	       (t1 - t0) / (double)n);
	return 0;
}
