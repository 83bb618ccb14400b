//! Opening KVM, and what dmavm asks of it on every architecture.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use anyhow::{anyhow, Result};
use dmavm_machine::user_text::shown;
use kvm_ioctls::Kvm;

/// Opens the KVM device, explaining the usual causes of failure.
pub fn open(path: &Path) -> Result<Kvm> {
    let not_kvm = || anyhow!("{} is not a KVM device (such as /dev/kvm)", shown(&path.display().to_string()));
    // Only a character device can be one; anything else (a FIFO, a
    // regular file) is refused before it is opened.
    match std::fs::metadata(path) {
        Ok(m) if !m.file_type().is_char_device() => return Err(not_kvm()),
        // A missing device is explained by the open's error below.
        _ => {}
    }
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| anyhow!("the KVM device path {} contains a NUL byte", path.display()))?;
    let kvm = Kvm::new_with_path(&c_path).map_err(|e| {
        let hint = match e.errno() {
            libc::ENOENT => "it does not exist: is KVM enabled in the host kernel and its module loaded?",
            libc::EACCES | libc::EPERM => "permission denied: run as root or join the group that owns it",
            libc::ENODEV | libc::ENXIO => {
                "no KVM driver behind it: is virtualisation enabled in the firmware?"
            }
            _ => "",
        };
        anyhow!(
            "cannot open {}: {e}{}{hint}",
            shown(&path.display().to_string()),
            if hint.is_empty() { "" } else { "; " }
        )
    })?;
    // Another character device (/dev/null) opens as well: only KVM answers
    // KVM_GET_API_VERSION, with the one version there is.
    if kvm.get_api_version() != KVM_API_VERSION {
        return Err(not_kvm());
    }
    Ok(kvm)
}

/// The only KVM API version (Documentation/virt/kvm/api.rst).
const KVM_API_VERSION: i32 = 12;

/// The largest vCPU count dmavm accepts on this host: KVM's limit, and 254
/// because the MADT and IOAPIC destinations use 8-bit xAPIC IDs (255 is the
/// broadcast ID).
pub fn max_vcpus(kvm: &Kvm) -> u32 {
    u32::try_from(kvm.get_max_vcpus()).unwrap_or(u32::MAX).min(254)
}
