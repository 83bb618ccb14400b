//! Device tree for an arm64 guest of dmavm: a `virt`-style machine described as plain data
//! ([`Machine`]) in, a flattened device tree blob out ([`build`]), plus a DTS rendering of any
//! blob ([`to_dts`]) and a reader ([`parse`]). No KVM, no guest memory: the VMM copies the blob
//! into RAM and passes its address in x0.
//!
//! The tree (every address and size at the root is two cells):
//!
//! - `/`: `compatible = "linux,dummy-virt"`, `model`, `interrupt-parent` = the GIC.
//! - `/chosen`: `bootargs`, `stdout-path` (the UART), `linux,initrd-start`/`-end` when there is
//!   an initrd; `/aliases`: `serial0`.
//! - `/memory@...`: one per RAM range.
//! - `/cpus/cpu@N`: `arm,armv8`, `enable-method = "psci"`, `reg` = MPIDR affinity; `/psci`:
//!   PSCI 1.0 (and 0.2) through `hvc`.
//! - `/interrupt-controller@...`: `arm,gic-v3`, distributor and redistributors, with the ITS
//!   (`arm,gic-v3-its`, `#msi-cells = <1>`) as `msi-controller@...` child.
//! - `/timer`: `arm,armv8-timer`, four PPIs.
//! - `/serial@...`: `ns16550a` with its `clock-frequency` (what dmavm emulates), or `arm,pl011`, `arm,primecell` with a `/clock-N` (`fixed-clock`) as both
//!   clocks.
//! - `/virtio@...` per virtio-mmio device (`/iommu@...` for the virtio-iommu, with
//!   `#iommu-cells = <1>`): `dma-coherent` exactly when coherent, `iommus = <&viommu ID>`
//!   exactly when translated.
//! - `/pcie@...` per host bridge: `pci-host-ecam-generic`, `bus-range`, `linux,pci-domain`,
//!   ECAM `reg`, `ranges`, `msi-map` to the ITS, `dma-coherent` exactly when coherent,
//!   `iommu-map` with exactly the translated requester IDs (none when nothing is translated),
//!   and the virtio-iommu as its `iommu@D,F` child when it is a PCI function there.
//!
//! Addresses come with the description (dmavm's machine model has the arm64 map). [`validate`] (run by
//! [`build`]) refuses a description that cannot be told truthfully: overlapping regions, shared
//! SPIs or endpoint IDs, translated devices without an IOMMU, the IOMMU in its own scope, and
//! so on (see [`Error`]).

mod description;
mod dts;
mod encode;
mod error;
#[cfg(test)]
mod test_utils;
mod tree;
mod validate;

pub use description::{
    ArchTimer, Chosen, GicV3, Machine, MemoryRange, Ns16550a, PciFunction, PciIommuRange, PciIommuScope,
    PciRoot, Pl011, Uart, VirtioIommu, VirtioMmioDevice,
};
pub use dts::to_dts;
pub use encode::{build, FDT_MAX_SIZE};
pub use error::Error;
pub use tree::{parse, Node, Property, Tree};
pub use validate::validate;
