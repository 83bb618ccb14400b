/*
 * vfio-domains - put two VFIO groups in one type1 container, as a
 * user-space driver would, so that the kernel tries to share one IOMMU
 * domain between them: vfio_iommu_type1 attaches the second group to the
 * first group's domain when it can and falls back to a domain of its own
 * when the IOMMU refuses (dmavm's --iommu mixed-coherency=reject answers
 * that ATTACH with S_UNSUPP when the two devices differ in coherency).
 * Then maps one buffer through the container (a MAP on every domain).
 *
 * usage: vfio-domains GROUP_A GROUP_B   (iommu group numbers)
 * prints: DMAVM vfio_container=ok|<failing step>
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int fail(const char *step)
{
	printf("DMAVM vfio_container=%s errno=%d (%s)\n", step, errno, strerror(errno));
	return 1;
}

static int open_group(const char *number, int container)
{
	char path[64];
	struct vfio_group_status status = { .argsz = sizeof(status) };
	snprintf(path, sizeof(path), "/dev/vfio/%s", number);
	int group = open(path, O_RDWR);
	if (group < 0)
		return -1;
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &status) < 0 || !(status.flags & VFIO_GROUP_FLAGS_VIABLE))
		return -1;
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) < 0)
		return -1;
	return group;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: vfio-domains GROUP_A GROUP_B\n");
		return 2;
	}
	int container = open("/dev/vfio/vfio", O_RDWR);
	if (container < 0)
		return fail("open_container");
	if (ioctl(container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		return fail("api_version");
	if (ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1)
		return fail("no_type1v2");
	if (open_group(argv[1], container) < 0)
		return fail("group_a");
	/* The first group gets a new domain here. */
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
		return fail("set_iommu");
	/* The second one is first offered the first group's domain. */
	if (open_group(argv[2], container) < 0)
		return fail("group_b");
	void *buf = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return fail("mmap");
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (unsigned long)buf,
		.iova = 0x100000,
		.size = 4096,
	};
	if (ioctl(container, VFIO_IOMMU_MAP_DMA, &map) < 0)
		return fail("map_dma");
	printf("DMAVM vfio_container=ok\n");
	return 0;
}
