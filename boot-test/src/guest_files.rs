//! The guest-side files the harness carries in its binary, so that a user
//! needs nothing but a kernel: the initramfs recipe, the init and helpers
//! it packs, and the check every run executes. They live in the
//! repository's resources/guest/, which the test bed uses too; every path
//! to them is in this file.

/// Embeds `resources/PATH` of the repository. The path goes through the
/// crate's manifest folder, so it holds from any crate one level below the
/// repository's root.
macro_rules! resource {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../resources/", $path))
    };
}

/// The initramfs recipe (busybox, the virtio modules, init, the helpers).
pub const BUILD_INITRAMFS: &str = resource!("guest/build-initramfs.sh");
/// The guest's /init: runs `/checks/$NAME.sh` for `dmavm.check=NAME` and
/// ends the VM through the exit device.
pub const INIT: &str = resource!("guest/init");
/// The exit-device helper init uses, built by the recipe.
pub const DMAVM_EXIT_C: &str = resource!("guest/dmavm-exit.c");
/// The VFIO helper the recipe builds (two groups in one container, for
/// the checks that try to share an IOMMU domain).
pub const VFIO_DOMAINS_C: &str = resource!("guest/vfio-domains.c");
/// The VFIO helper the recipe builds (a translated disk made to DMA to an
/// unmapped IOVA, for the IOMMU fault check).
pub const VFIO_BLK_FAULT_C: &str = resource!("guest/vfio-blk-fault.c");
/// The harness's check (`dmavm.check=boot-test`).
pub const BOOT_TEST_CHECK: &str = resource!("guest/checks/boot-test.sh");
/// The DMAR reader the check runs (shared with the test bed's VT-d check).
pub const DMAR_STRUCTURES: &str = resource!("guest/checks/dmar-structures.sh");
/// The guest's half of the `net` check the check runs for every network
/// device (shared with the test bed's net check).
pub const NET_EXCHANGE: &str = resource!("guest/checks/net-exchange.sh");
