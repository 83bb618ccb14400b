//! The vCPU threads' allow-list. A vCPU thread enters the guest and
//! handles each exit inline: port and MMIO accesses to the device models
//! (register files, PCI config space, the UART, the IOAPIC), and the
//! virtio-iommu's requests, which it answers on the notifying vCPU. All of
//! that works on guest memory already mapped and on descriptors already
//! open; it opens nothing.

use std::collections::BTreeMap;

use anyhow::Result;
use seccompiler::SeccompRule;

use super::ioctls;
use super::rules::AllowList;

/// The calls a vCPU thread may make.
pub fn rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>> {
    let mut list = allow_list()?;
    super::common::add(&mut list)?;
    Ok(list.into_rules())
}

fn allow_list() -> Result<AllowList> {
    let mut list = AllowList::default();
    list.ioctls(&[
        // Entering the guest.
        ioctls::KVM_RUN(),
        // The guest rewrote an MSI-X table entry or an IOAPIC
        // redirection entry: its route follows.
        ioctls::KVM_SET_GSI_ROUTING(),
        // The guest moved a virtio-pci BAR: the queue notify ioeventfds
        // move with it.
        ioctls::KVM_IOEVENTFD(),
    ])?;
    // A virtio-net device sets its TAP's offloads as the driver
    // negotiates them.
    list.ioctls(&[super::ioctls::TAP_OFFLOADS])?;
    // The IOAPIC delivers its pins' MSIs on the thread that raised them
    // (an EOI that re-raises a level-triggered pin).
    #[cfg(target_arch = "x86_64")]
    list.ioctls(&[ioctls::KVM_SIGNAL_MSI()])?;
    // Registers of a vCPU that stops on an error, printed at --log-level
    // debug (read-only).
    #[cfg(target_arch = "x86_64")]
    list.ioctls(&[ioctls::KVM_GET_REGS(), ioctls::KVM_GET_SREGS()])?;
    #[cfg(target_arch = "aarch64")]
    list.ioctls(&[ioctls::KVM_GET_ONE_REG()])?;
    Ok(list)
}

#[cfg(test)]
pub(super) fn list_for_tests() -> Result<AllowList> {
    let mut list = allow_list()?;
    super::common::add(&mut list)?;
    Ok(list)
}
