//! Opening KVM and creating the VM with the split irqchip.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{anyhow, Result};
#[cfg(target_arch = "x86_64")]
use anyhow::{bail, Context};
#[cfg(target_arch = "x86_64")]
use kvm_bindings::{kvm_enable_cap, KVM_CAP_SPLIT_IRQCHIP};
use kvm_ioctls::Kvm;
#[cfg(target_arch = "x86_64")]
use kvm_ioctls::{Cap, VmFd};

#[cfg(target_arch = "x86_64")]
use crate::arch::layout::KVM_TSS_ADDR;

/// IOAPIC pins, and so the routes KVM reserves for them with the split
/// irqchip.
#[cfg(target_arch = "x86_64")]
pub const IOAPIC_PINS: u64 = 24;

/// Opens the KVM device, explaining the usual causes of failure.
pub fn open(path: &Path) -> Result<Kvm> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| anyhow!("the KVM device path {} contains a NUL byte", path.display()))?;
    Kvm::new_with_path(&c_path).map_err(|e| {
        let hint = match e.errno() {
            libc::ENOENT => "it does not exist: is KVM enabled in the host kernel and its module loaded?",
            libc::EACCES | libc::EPERM => "permission denied: run as root or join the group that owns it",
            libc::ENODEV | libc::ENXIO => {
                "no KVM driver behind it: is virtualisation enabled in the firmware?"
            }
            _ => "",
        };
        anyhow!("cannot open {}: {e}{}{hint}", path.display(), if hint.is_empty() { "" } else { "; " })
    })
}

/// The largest vCPU count dmavm accepts on this host: KVM's limit, and 254
/// because the MADT and IOAPIC destinations use 8-bit xAPIC IDs (255 is the
/// broadcast ID).
pub fn max_vcpus(kvm: &Kvm) -> u32 {
    u32::try_from(kvm.get_max_vcpus()).unwrap_or(u32::MAX).min(254)
}

/// Creates the VM: split irqchip (local APICs in KVM, IOAPIC in dmavm, no
/// in-kernel PIT or PIC), as measured in TESTBED.md this avoids the 8-32 ms
/// teardown cost of the in-kernel PIT and the slow memory registration of
/// the full in-kernel irqchip.
#[cfg(target_arch = "x86_64")]
pub fn create_vm(kvm: &Kvm) -> Result<VmFd> {
    for (cap, name) in [
        (Cap::SplitIrqchip, "KVM_CAP_SPLIT_IRQCHIP"),
        (Cap::SignalMsi, "KVM_CAP_SIGNAL_MSI"),
        (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
    ] {
        if !kvm.check_extension(cap) {
            bail!("this host's KVM lacks {name}, which dmavm needs");
        }
    }
    let vm = kvm.create_vm().context("KVM_CREATE_VM failed")?;
    let cap =
        kvm_enable_cap { cap: KVM_CAP_SPLIT_IRQCHIP, args: [IOAPIC_PINS, 0, 0, 0], ..Default::default() };
    vm.enable_cap(&cap).context("cannot enable KVM's split irqchip")?;
    let tss = usize::try_from(KVM_TSS_ADDR).context("TSS address")?;
    vm.set_tss_address(tss).context("KVM_SET_TSS_ADDR failed")?;
    Ok(vm)
}
