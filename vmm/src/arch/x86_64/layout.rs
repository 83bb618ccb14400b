//! The x86_64 guest-physical address map: the machine model's
//! ([`dmavm_machine::layout::x86_64`]: RAM around the 32-bit MMIO hole, PCI
//! and virtio-mmio windows, the IOAPIC, the ACPI area), and where booting
//! puts its own structures in low memory.

pub use dmavm_machine::layout::x86_64::{ram_ranges, IOAPIC_ADDR, IOAPIC_SIZE, MMIO_HOLE_START};
#[cfg(test)]
use dmavm_machine::layout::x86_64::{ACPI_END, ACPI_START};

/// KVM needs three pages for the VMX real-mode TSS on Intel hosts; they
/// sit in the hole, just below the firmware area, as QEMU and Cloud
/// Hypervisor put them.
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;

/// End of conventional low memory: the EBDA and the legacy BIOS area
/// above it are reserved in the e820 map, as on a PC.
pub const EBDA_START: u64 = 0x9_fc00;
/// PVH `hvm_start_info`, followed by its memory map.
pub const PVH_START_INFO: u64 = 0x6000;
/// Linux's zero page (`boot_params`) for bzImage boot.
pub const ZERO_PAGE: u64 = 0x7000;
/// The kernel command line.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Room for the command line (Linux's own limit is in the bzImage header,
/// 2048 bytes on x86 unless configured otherwise).
pub const CMDLINE_MAX: u64 = 0x1_0000;
/// The real-mode reset vector (F000:FFF0), where a guest that asks "the
/// BIOS" to reboot jumps; dmavm puts a tiny reset stub there.
pub const RESET_VECTOR: u64 = 0xf_fff0;
// The reset stub's 16 bytes sit between the ACPI tables and high memory.
const _: () = assert!(
    dmavm_machine::layout::x86_64::ACPI_END <= RESET_VECTOR && RESET_VECTOR + 16 <= HIGH_MEMORY_START
);
/// Where the kernel's protected-mode code goes (`code32_start`).
pub const HIGH_MEMORY_START: u64 = 0x10_0000;

/// Boot-time GDT (null, code64, data).
pub const BOOT_GDT: u64 = 0x500;
/// Boot page tables: PML4, one PDPT, four page directories mapping the
/// first 4 GiB with 2 MiB pages.
pub const BOOT_PML4: u64 = 0x9000;
/// The PDPT below [`BOOT_PML4`].
pub const BOOT_PDPT: u64 = 0xa000;
/// First of the four page directories.
pub const BOOT_PD: u64 = 0xb000;
/// Where a test payload is loaded and entered.
pub const PAYLOAD_ADDR: u64 = 0x10_0000;
/// Top of the payload stacks; vCPU `i` gets the 1 KiB below
/// `PAYLOAD_STACK_TOP - i * PAYLOAD_STACK_SIZE`.
pub const PAYLOAD_STACK_TOP: u64 = 0x8_0000;
/// Stack bytes per vCPU for payloads.
pub const PAYLOAD_STACK_SIZE: u64 = 0x400;
// The stacks of 254 vCPUs stay above the boot page tables.
const _: () = assert!(PAYLOAD_STACK_TOP - 254 * PAYLOAD_STACK_SIZE > BOOT_PD + 4 * 0x1000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_structures_sit_below_the_kernel_and_clear_of_each_other() {
        let mut regions = [
            (BOOT_GDT, 0x18),
            (PVH_START_INFO, 0x1000),
            (ZERO_PAGE, 0x1000),
            (BOOT_PML4, 0x1000),
            (BOOT_PDPT, 0x1000),
            (BOOT_PD, 4 * 0x1000),
            (CMDLINE_ADDR, CMDLINE_MAX),
            (ACPI_START, ACPI_END - ACPI_START),
        ];
        regions.sort_unstable();
        for w in regions.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "{:#x?} overlaps {:#x?}", w[0], w[1]);
        }
        assert!(regions.iter().all(|(a, l)| a + l <= HIGH_MEMORY_START));
        assert!((MMIO_HOLE_START..1 << 32).contains(&KVM_TSS_ADDR));
    }
}
