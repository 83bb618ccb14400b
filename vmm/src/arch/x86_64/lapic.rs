//! Local APIC start state: LINT0 as ExtINT and LINT1 as NMI, the virtual
//! wire set-up PC firmware leaves (MP spec 1.4, 3.6.2.2) and Linux expects.

use anyhow::{Context, Result};
use kvm_ioctls::VcpuFd;

const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
const DELIVERY_MODE_SHIFT: u32 = 8;
const DELIVERY_MODE_MASK: u32 = 0x7 << DELIVERY_MODE_SHIFT;
const DELIVERY_MODE_NMI: u32 = 0x4;
const DELIVERY_MODE_EXTINT: u32 = 0x7;

fn with_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !DELIVERY_MODE_MASK) | (mode << DELIVERY_MODE_SHIFT)
}

/// Sets LINT0/LINT1 of `vcpu`'s local APIC.
pub fn setup(vcpu: &VcpuFd) -> Result<()> {
    let mut state = vcpu.get_lapic().context("KVM_GET_LAPIC")?;
    for (offset, mode) in [(APIC_LVT_LINT0, DELIVERY_MODE_EXTINT), (APIC_LVT_LINT1, DELIVERY_MODE_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| state.regs[offset + i] as u8);
        let value = with_delivery_mode(u32::from_le_bytes(bytes), mode);
        for (i, b) in value.to_le_bytes().into_iter().enumerate() {
            state.regs[offset + i] = b as _;
        }
    }
    vcpu.set_lapic(&state).context("KVM_SET_LAPIC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_mode_bits() {
        // Reset value of an LVT entry is masked (bit 16); keep it, set mode.
        assert_eq!(with_delivery_mode(0x0001_0000, DELIVERY_MODE_NMI), 0x0001_0400);
        assert_eq!(with_delivery_mode(0x0000_0700, DELIVERY_MODE_NMI), 0x0000_0400);
        assert_eq!(with_delivery_mode(0, DELIVERY_MODE_EXTINT), 0x0000_0700);
    }
}
