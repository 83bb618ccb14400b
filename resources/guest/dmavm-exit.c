/*
 * dmavm-exit - end the VM with an exit status through dmavm's exit device:
 * one byte written to I/O port 0xf4.
 *
 * The guest init needs this because the Debian cloud kernel is built without
 * CONFIG_DEVPORT, so `dd of=/dev/port` is not available. Freestanding (no libc)
 * so the static binary is a few KiB: build with
 *   gcc -Os -static -nostdlib -ffreestanding -fno-tree-loop-distribute-patterns \
 *       -fno-stack-protector -fcf-protection=none -fno-pie -no-pie -s \
 *       -o dmavm-exit dmavm-exit.c
 * usage: dmavm-exit STATUS   (0-255; needs CAP_SYS_RAWIO, i.e. root)
 * If the write does not stop the VM (no exit device), it exits with status 1.
 */

#define SYS_write 1
#define SYS_ioperm 173
#define SYS_exit_group 231
#define EXIT_PORT 0xf4

static long sys3(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "a"(n), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return r;
}

static void say(const char *s)
{
	long n = 0;
	while (s[n])
		n++;
	sys3(SYS_write, 2, (long)s, n);
}

static void __attribute__((noreturn)) quit(int status)
{
	for (;;)
		sys3(SYS_exit_group, status, 0, 0);
}

void __attribute__((noreturn, used)) dmavm_exit_main(long argc, char **argv)
{
	unsigned long v = 0;
	const char *p;

	if (argc != 2 || !argv[1][0]) {
		say("usage: dmavm-exit STATUS\n");
		quit(2);
	}
	for (p = argv[1]; *p; p++) {
		if (*p < '0' || *p > '9' || v > 255) {
			say("dmavm-exit: STATUS must be 0-255\n");
			quit(2);
		}
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 255) {
		say("dmavm-exit: STATUS must be 0-255\n");
		quit(2);
	}
	if (sys3(SYS_ioperm, EXIT_PORT, 1, 1) != 0) {
		say("dmavm-exit: ioperm(0xf4) failed\n");
		quit(1);
	}
	__asm__ volatile("outb %b0, %w1" : : "a"(v), "Nd"(EXIT_PORT));
	say("dmavm-exit: the VM did not stop\n");
	quit(1);
}

__asm__(".globl _start\n"
	"_start:\n"
	"	mov (%rsp), %rdi\n"
	"	lea 8(%rsp), %rsi\n"
	"	and $-16, %rsp\n"
	"	call dmavm_exit_main\n"
	"	ud2\n");
