//! Test payloads: flat 64-bit binaries entered in long mode (see the
//! `--payload` help and resources/payloads/README.md for the contract).

use std::path::Path;

use anyhow::{bail, Context, Result};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::entry::EntryState;
use crate::arch::layout::{MMIO_HOLE_START, PAYLOAD_ADDR, PAYLOAD_STACK_SIZE, PAYLOAD_STACK_TOP};
use dmavm_machine::input_file::{self, Purpose};

/// Loads the payload at `path` into `mem`; returns its entry address.
pub fn load(path: &Path, mem: &GuestMemoryMmap, mem_size: u64) -> Result<u64> {
    let image = input_file::read(path, Purpose::Payload)?;
    if image.is_empty() {
        bail!("payload {} is empty", path.display());
    }
    let end = mem_size.min(MMIO_HOLE_START);
    let room = end.saturating_sub(PAYLOAD_ADDR);
    if image.len() as u64 > room {
        bail!(
            "payload {} ({} bytes) does not fit in guest memory: {room} bytes available from {PAYLOAD_ADDR:#x}",
            path.display(),
            image.len()
        );
    }
    mem.write_slice(&image, GuestAddress(PAYLOAD_ADDR)).context("writing the payload into guest memory")?;
    Ok(PAYLOAD_ADDR)
}

/// The entry state of vCPU `index` of `count`.
pub fn entry_state(entry: u64, index: u32, count: u32) -> EntryState {
    EntryState {
        rip: entry,
        rsp: PAYLOAD_STACK_TOP - u64::from(index) * PAYLOAD_STACK_SIZE,
        rdi: u64::from(index),
        rsi: u64::from(count),
    }
}
