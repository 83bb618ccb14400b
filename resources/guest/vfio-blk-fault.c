/*
 * vfio-blk-fault - make a translated virtio-blk PCI function DMA to an IOVA
 * that its IOMMU domain does not map, from user space through VFIO, and
 * show that the request fails without touching memory, then that a mapped
 * request on the same queue succeeds (so the failure is the IOMMU's doing,
 * not a mis-driven device).
 *
 * The function is put alone in a type1 container; two pages are mapped:
 *   RING_IOVA  descriptor table, available and used rings, request
 *              headers and status bytes
 *   DATA_IOVA  a data page filled with a canary
 * and nothing else. The device is driven through its modern virtio-pci
 * interface (virtio 1.3 section 4.1), found from the vendor capabilities
 * in its config space and accessed through the VFIO region of each BAR;
 * it gets no interrupt vector, the used ring is polled with a deadline.
 *
 * Three virtio-blk reads of sector 0 (virtio 1.3 section 5.2.6), each a
 * header, one device-writable data descriptor and a status byte:
 *   unmapped  512 bytes at UNMAPPED_IOVA, a page no mapping covers
 *   straddle  1024 bytes from DATA_IOVA + 0xe00: its first half is mapped
 *             (canary), its second starts at DATA_IOVA + 0x1000, unmapped
 *   control   512 bytes at DATA_IOVA, mapped
 * The first two must complete with VIRTIO_BLK_S_IOERR and leave the whole
 * canary page as it was (no partial DMA), the third with VIRTIO_BLK_S_OK,
 * its 512 bytes written to OUT_FILE for the caller to compare with the
 * disk's first sector.
 *
 * usage: vfio-blk-fault GROUP BDF OUT_FILE
 * prints DMAVM key=value lines: fault_<request>_iova (the first address
 * the IOMMU cannot translate, what the fault report must name),
 * fault_<request>_used (1 when the device returned the chain),
 * fault_<request>_status (the status byte, 255 if never written),
 * fault_<request>_device_status (virtio device status after it),
 * fault_canary_intact, and fault_error=<step> on any failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define RING_IOVA 0x100000ull
#define DATA_IOVA 0x200000ull
/* Beyond both mappings and below any reserved region (the x86 MSI window). */
#define UNMAPPED_IOVA 0x400000ull

#define QUEUE_SIZE 16u
/* Offsets in the ring page (virtio 1.3 section 2.7: 16-, 2- and 4-byte alignment). */
#define DESC_OFF 0x000u
#define AVAIL_OFF 0x100u
#define USED_OFF 0x200u
#define HEADER_OFF 0x400u /* one 16-byte header per request */
#define STATUS_OFF 0x600u /* one status byte per request */

/* virtio 1.3 section 4.1.4: vendor capability types and common cfg fields. */
#define PCI_CAP_ID_VNDR 0x09
#define CFG_COMMON 1
#define CFG_NOTIFY 2
#define COMMON_DF_SELECT 0
#define COMMON_DF 4
#define COMMON_GF_SELECT 8
#define COMMON_GF 12
#define COMMON_STATUS 20
#define COMMON_Q_SELECT 22
#define COMMON_Q_SIZE 24
#define COMMON_Q_ENABLE 28
#define COMMON_Q_NOTIFY_OFF 30
#define COMMON_Q_DESC 32
#define COMMON_Q_DRIVER 40
#define COMMON_Q_DEVICE 48

/* Device status bits (virtio 1.3 section 2.1). */
#define S_ACKNOWLEDGE 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 64
#define S_FAILED 128

#define F_VERSION_1 (1ull << 32)
#define F_ACCESS_PLATFORM (1ull << 33)

#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define BLK_T_IN 0
#define CANARY 0xa5

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct blk_header {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

static int device = -1;
static uint64_t config_offset;
/* Where each structure lives: BAR region offset in the device fd. */
static uint64_t common_at, notify_at;
static uint32_t notify_multiplier;
static uint8_t *ring, *data;
static uint16_t avail_idx;

static int fail(const char *step)
{
	printf("DMAVM fault_error=%s errno=%d (%s)\n", step, errno, strerror(errno));
	return 1;
}

static int rd(uint64_t at, void *buf, size_t len)
{
	return pread(device, buf, len, (off_t)at) == (ssize_t)len ? 0 : -1;
}

static int wr(uint64_t at, const void *buf, size_t len)
{
	return pwrite(device, buf, len, (off_t)at) == (ssize_t)len ? 0 : -1;
}

static uint8_t rd8(uint64_t at)
{
	uint8_t v = 0;
	rd(at, &v, 1);
	return v;
}

static uint32_t rd32(uint64_t at)
{
	uint32_t v = 0;
	rd(at, &v, 4);
	return v;
}

static int wr8(uint64_t at, uint8_t v) { return wr(at, &v, 1); }
static int wr16(uint64_t at, uint16_t v) { return wr(at, &v, 2); }
static int wr32(uint64_t at, uint32_t v) { return wr(at, &v, 4); }

/* A 64-bit field as two 32-bit halves, which virtio 1.3 section 4.1.3.1 allows. */
static int wr64(uint64_t at, uint64_t v)
{
	return wr32(at, (uint32_t)v) || wr32(at + 4, (uint32_t)(v >> 32)) ? -1 : 0;
}

static uint64_t region_offset(unsigned index)
{
	struct vfio_region_info info = { .argsz = sizeof(info), .index = index };
	if (ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &info) < 0)
		return UINT64_MAX;
	return info.offset;
}

/* Walks the capability list for the common and notify structures. */
static int find_structures(void)
{
	uint8_t pos = rd8(config_offset + 0x34) & 0xfc;
	int found = 0;
	for (int guard = 0; pos && guard < 48; guard++) {
		uint8_t cap[20] = { 0 };
		if (rd(config_offset + pos, cap, sizeof(cap)) < 0)
			return -1;
		if (cap[0] == PCI_CAP_ID_VNDR && (cap[3] == CFG_COMMON || cap[3] == CFG_NOTIFY)) {
			uint32_t offset;
			memcpy(&offset, cap + 8, 4);
			uint64_t bar = region_offset(VFIO_PCI_BAR0_REGION_INDEX + cap[4]);
			if (bar == UINT64_MAX)
				return -1;
			if (cap[3] == CFG_COMMON) {
				common_at = bar + offset;
				found |= 1;
			} else {
				notify_at = bar + offset;
				memcpy(&notify_multiplier, cap + 16, 4);
				found |= 2;
			}
		}
		pos = cap[1] & 0xfc;
	}
	return found == 3 ? 0 : -1;
}

static int map(int container, void *vaddr, uint64_t iova)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)vaddr,
		.iova = iova,
		.size = PAGE,
	};
	return ioctl(container, VFIO_IOMMU_MAP_DMA, &m);
}

/* Reset, negotiate VERSION_1 and ACCESS_PLATFORM, one queue, DRIVER_OK (virtio 1.3 section 3.1.1). */
static const char *start_device(void)
{
	uint16_t queue_notify_off;
	if (wr8(common_at + COMMON_STATUS, 0))
		return "reset";
	for (int i = 0; i < 1000 && rd8(common_at + COMMON_STATUS); i++)
		usleep(1000);
	wr8(common_at + COMMON_STATUS, S_ACKNOWLEDGE);
	wr8(common_at + COMMON_STATUS, S_ACKNOWLEDGE | S_DRIVER);
	wr32(common_at + COMMON_DF_SELECT, 1);
	uint64_t offered = (uint64_t)rd32(common_at + COMMON_DF) << 32;
	uint64_t wanted = F_VERSION_1 | F_ACCESS_PLATFORM;
	if ((offered & wanted) != wanted)
		return "features_offered";
	wr32(common_at + COMMON_GF_SELECT, 0);
	wr32(common_at + COMMON_GF, 0);
	wr32(common_at + COMMON_GF_SELECT, 1);
	wr32(common_at + COMMON_GF, (uint32_t)(wanted >> 32));
	wr8(common_at + COMMON_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
	if (!(rd8(common_at + COMMON_STATUS) & S_FEATURES_OK))
		return "features_ok";
	wr16(common_at + COMMON_Q_SELECT, 0);
	wr16(common_at + COMMON_Q_SIZE, QUEUE_SIZE);
	wr64(common_at + COMMON_Q_DESC, RING_IOVA + DESC_OFF);
	wr64(common_at + COMMON_Q_DRIVER, RING_IOVA + AVAIL_OFF);
	wr64(common_at + COMMON_Q_DEVICE, RING_IOVA + USED_OFF);
	if (rd(common_at + COMMON_Q_NOTIFY_OFF, &queue_notify_off, 2) < 0)
		return "notify_off";
	notify_at += (uint64_t)queue_notify_off * notify_multiplier;
	wr16(common_at + COMMON_Q_ENABLE, 1);
	wr8(common_at + COMMON_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	uint8_t status = rd8(common_at + COMMON_STATUS);
	if (!(status & S_DRIVER_OK) || (status & (S_FAILED | S_NEEDS_RESET)))
		return "driver_ok";
	return NULL;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * Request number n: a read of sector 0 into `len` bytes at `iova`; prints
 * its outcome under `name`. Returns the status byte (255: never written).
 */
static int request(const char *name, unsigned n, uint64_t iova, uint32_t len, uint64_t fault_iova)
{
	volatile struct desc *table = (volatile struct desc *)(ring + DESC_OFF);
	volatile uint16_t *avail = (volatile uint16_t *)(ring + AVAIL_OFF);
	volatile uint16_t *used_idx = (volatile uint16_t *)(ring + USED_OFF + 2);
	volatile uint8_t *status = ring + STATUS_OFF + n;
	struct blk_header header = { .type = BLK_T_IN, .reserved = 0, .sector = 0 };
	unsigned head = 3 * n;

	memcpy(ring + HEADER_OFF + 16 * n, &header, sizeof(header));
	*status = 0xff;
	table[head] = (struct desc){ RING_IOVA + HEADER_OFF + 16 * n, 16, DESC_F_NEXT, (uint16_t)(head + 1) };
	table[head + 1] = (struct desc){ iova, len, DESC_F_NEXT | DESC_F_WRITE, (uint16_t)(head + 2) };
	table[head + 2] = (struct desc){ RING_IOVA + STATUS_OFF + n, 1, DESC_F_WRITE, 0 };
	uint16_t before = *used_idx;
	avail[2 + avail_idx % QUEUE_SIZE] = (uint16_t)head;
	__sync_synchronize();
	avail[1] = ++avail_idx;
	__sync_synchronize();
	wr16(notify_at, 0);
	double deadline = now() + 5.0;
	while (*used_idx == before && now() < deadline)
		usleep(1000);
	__sync_synchronize();
	int used = *used_idx != before;
	if (fault_iova)
		printf("DMAVM fault_%s_iova=%#llx\n", name, (unsigned long long)fault_iova);
	printf("DMAVM fault_%s_used=%d fault_%s_status=%u fault_%s_device_status=%#x\n", name, used, name,
	       (unsigned)*status, name, (unsigned)rd8(common_at + COMMON_STATUS));
	return *status;
}

static int canary_intact(void)
{
	for (unsigned i = 0; i < PAGE; i++)
		if (data[i] != CANARY)
			return 0;
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: vfio-blk-fault GROUP BDF OUT_FILE\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	char path[64];
	snprintf(path, sizeof(path), "/dev/vfio/%s", argv[1]);
	int container = open("/dev/vfio/vfio", O_RDWR);
	if (container < 0)
		return fail("open_container");
	if (ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1)
		return fail("no_type1v2");
	int group = open(path, O_RDWR);
	if (group < 0)
		return fail("open_group");
	struct vfio_group_status gs = { .argsz = sizeof(gs) };
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &gs) < 0 || !(gs.flags & VFIO_GROUP_FLAGS_VIABLE))
		return fail("group_viable");
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) < 0)
		return fail("set_container");
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
		return fail("set_iommu");
	device = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, argv[2]);
	if (device < 0)
		return fail("device_fd");

	ring = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	data = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ring == MAP_FAILED || data == MAP_FAILED)
		return fail("mmap");
	memset(ring, 0, PAGE);
	memset(data, CANARY, PAGE);
	if (map(container, ring, RING_IOVA) < 0 || map(container, data, DATA_IOVA) < 0)
		return fail("map_dma");

	config_offset = region_offset(VFIO_PCI_CONFIG_REGION_INDEX);
	if (config_offset == UINT64_MAX)
		return fail("config_region");
	/* Memory space and bus mastering: VFIO leaves the command register to the user. */
	uint16_t command = 0;
	if (rd(config_offset + 4, &command, 2) < 0)
		return fail("command_read");
	command |= 0x2 | 0x4;
	if (wr(config_offset + 4, &command, 2) < 0)
		return fail("command_write");
	if (find_structures() < 0)
		return fail("capabilities");
	const char *step = start_device();
	if (step)
		return fail(step);

	int st_unmapped = request("unmapped", 0, UNMAPPED_IOVA, 512, UNMAPPED_IOVA);
	int st_straddle = request("straddle", 1, DATA_IOVA + 0xe00, 1024, DATA_IOVA + PAGE);
	int intact = canary_intact();
	printf("DMAVM fault_canary_intact=%d\n", intact);
	int st_control = request("control", 2, DATA_IOVA, 512, 0);
	FILE *out = fopen(argv[3], "wb");
	if (!out || fwrite(data, 1, 512, out) != 512 || fclose(out))
		return fail("out_file");
	/* virtio-blk status: 0 OK, 1 IOERR. */
	return st_unmapped == 1 && st_straddle == 1 && intact && st_control == 0 ? 0 : 1;
}
