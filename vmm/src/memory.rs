//! Guest RAM: anonymous mappings (vm-memory's mmap backend) laid out around
//! the 32-bit MMIO hole and registered with KVM.

use anyhow::{Context, Result};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::arch::layout::ram_ranges;

/// Maps `size` bytes of guest RAM. Pages are only backed when the guest
/// touches them (the mappings are private, anonymous and not reserved).
///
/// With `huge_pages`, the mappings are advised for transparent huge pages
/// (`MADV_HUGEPAGE`, as QEMU does), so KVM can back guest memory with 2 MiB
/// pages also on hosts whose THP mode is "madvise" (Debian's default
/// `defrag` setting only compacts for advised mappings). A payload touches
/// a few pages, and a huge page would only inflate its footprint, so it
/// goes without.
pub fn create(size: u64, huge_pages: bool) -> Result<GuestMemoryMmap> {
    let ranges: Vec<(GuestAddress, usize)> = ram_ranges(size)
        .into_iter()
        .map(|(base, len)| Ok((GuestAddress(base), usize::try_from(len)?)))
        .collect::<Result<_>>()?;
    let mem = GuestMemoryMmap::from_ranges(&ranges)
        .with_context(|| format!("cannot map {} MiB of guest memory", size >> 20))?;
    if huge_pages {
        for region in mem.iter() {
            let len = usize::try_from(region.len())?;
            // SAFETY: the range is exactly one live mapping owned by `mem`;
            // madvise only changes how the kernel backs it.
            let rc = unsafe { libc::madvise(region.as_ptr().cast(), len, libc::MADV_HUGEPAGE) };
            if rc != 0 {
                // Not fatal: kernels without THP refuse the advice.
                log::debug!("madvise(MADV_HUGEPAGE) on guest memory: {}", std::io::Error::last_os_error());
            }
        }
    }
    Ok(mem)
}

/// Registers every RAM region with KVM, one memory slot each.
///
/// The caller must keep `mem` mapped for as long as `vm` (or any of its
/// vCPUs) can run: dmavm keeps it in the state shared with the vCPU threads.
pub fn register(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<()> {
    for (slot, region) in mem.iter().enumerate() {
        let kvm_region = kvm_userspace_memory_region {
            slot: u32::try_from(slot)?,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mapping of `memory_size` bytes owned by
        // `mem`, which the caller keeps alive while the VM can run; slots do
        // not overlap because `mem`'s regions do not.
        unsafe { vm.set_user_memory_region(kvm_region) }
            .with_context(|| format!("cannot register guest memory slot {slot} with KVM"))?;
    }
    Ok(())
}
