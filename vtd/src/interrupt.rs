//! [`FaultInterrupt`]: how the unit raises its interrupts.

/// Sends the unit's message-signalled interrupts: the fault event
/// (FEUADDR:FEADDR, FEDATA) and the invalidation completion event
/// (IEUADDR:IEADDR, IEDATA). The VMM implements it (with KVM: an MSI
/// injection). The unit calls it with its register lock held, so an
/// implementation must not access the unit's registers.
pub trait FaultInterrupt: Send + Sync {
    /// Delivers the MSI `data` to `address`, as the guest programmed them.
    fn send_msi(&self, address: u64, data: u32);
}
