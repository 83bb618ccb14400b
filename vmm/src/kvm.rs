//! Opening KVM, and what dmavm asks of it on every architecture.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{anyhow, Result};
use kvm_ioctls::Kvm;

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
