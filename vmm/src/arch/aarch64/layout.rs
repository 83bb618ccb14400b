//! The arm64 guest-physical address map: the machine model's
//! ([`dmavm_machine::layout::aarch64`], QEMU `virt` style, 40-bit IPA
//! space), and where booting puts the kernel, initrd and device tree.
//!
//! Boot-time placement (Documentation/arch/arm64/booting.rst): the kernel
//! `Image` at the start of RAM (2 MiB aligned) plus its `text_offset`; the
//! device tree blob in the 2 MiB region at the top of the first GiB of RAM
//! (or of RAM, if smaller); the initrd just below it. The kernel, the
//! initrd and the DTB then all sit in the first GiB, which satisfies the
//! booting rule that the initrd lie in a 1 GiB aligned window of at most
//! 32 GiB that also covers the kernel.

use dmavm_machine::dt::fdt_region;
pub use dmavm_machine::layout::aarch64::{
    gic, pci_segment, GIC_ITS, MAX_VCPUS, RAM_MAX as MAX_MEMORY, RAM_START, UART, UART_SPI,
    VIRTIO_MMIO_FIRST_SPI,
};
pub use dmavm_machine::layout::VIRTIO_MMIO_WINDOWS;

/// The RAM ranges (guest address, length) for `size` bytes of RAM: one,
/// from [`RAM_START`].
pub fn ram_ranges(size: u64) -> Vec<(u64, u64)> {
    dmavm_machine::Arch::Aarch64.ram_ranges(size)
}

/// Where the device tree blob goes below `boot_top` (the machine's
/// [`dmavm_machine::Machine::boot_top`]: the top of the boot window, below
/// every restricted DMA pool): the 2 MiB region at the top (the machine
/// model's [`fdt_region`], which `describe` shows).
pub fn fdt_address(boot_top: u64) -> Option<u64> {
    fdt_region(boot_top).map(|r| r.base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_tree_sits_at_the_top_of_the_boot_window() {
        let top = |memory| dmavm_machine::dt::boot_top(memory, None);
        assert_eq!(fdt_address(top(256 << 20)), Some(RAM_START + (254 << 20)));
        assert_eq!(fdt_address(top(4 << 30)), Some(RAM_START + (1022 << 20)));
        assert_eq!(fdt_address(top(1 << 20)), None);
        // Below a restricted DMA pool at the top of RAM.
        let below_pool = dmavm_machine::dt::boot_top(256 << 20, Some(RAM_START + (252 << 20)));
        assert_eq!(fdt_address(below_pool), Some(RAM_START + (250 << 20)));
    }
}
