//! [`VtdConfig`]: the properties of one emulated remapping unit.

/// How one VT-d remapping unit behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VtdConfig {
    /// Page-walk coherency (ECAP.C) and snoop control (ECAP.SC): the unit
    /// reads its tables coherently with the CPU caches. dmavm's unit always
    /// does (it reads guest memory through the host's caches); declaring it
    /// not coherent makes the guest flush every table update, as on
    /// hardware whose walker does not snoop.
    pub coherent: bool,
    /// Most translations each endpoint's IOTLB caches (upper bound; when a
    /// fill would pass it the endpoint's IOTLB starts over empty).
    pub iotlb_entries: usize,
}

impl Default for VtdConfig {
    fn default() -> Self {
        Self { coherent: true, iotlb_entries: 1024 }
    }
}
