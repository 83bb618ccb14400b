//! The console UART on arm64: vm-superio's 16550A (the model COM1 uses on
//! x86_64) on the MMIO bus, byte registers at consecutive addresses, declared
//! `ns16550a` in the device tree, its interrupt an edge on an SPI raised by
//! irqfd. The UART itself is the shared `crate::console`.

use anyhow::{Context, Result};
use dmavm_devices::Bus;
use kvm_ioctls::VmFd;
use vm_superio::Trigger;

use super::interrupts::{GsiRouter, IrqfdPin};
use crate::console::Console;

/// The GSI the UART's irqfd uses (routed to its SPI); below the
/// virtio-mmio windows' GSIs (their SPIs, 16 and up).
pub const GSI: u32 = 1;

/// vm-superio's interrupt trigger as an edge on the UART's SPI.
pub struct SpiTrigger(IrqfdPin);

impl Trigger for SpiTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.trigger()
    }
}

/// The console UART at `region` on `mmio`, raising SPI `spi`.
pub fn console(
    vm: &VmFd,
    router: &GsiRouter,
    mmio: &Bus,
    region: dmavm_fdt::MemoryRange,
    spi: u32,
) -> Result<Console<SpiTrigger>> {
    super::interrupts::route_spi(router, GSI, spi)?;
    let line = IrqfdPin::new(vm, GSI).context("wiring the UART's interrupt")?;
    let console = Console::with_trigger(SpiTrigger(line))?;
    // The whole page: accesses beyond the eight registers read as a
    // floating bus instead of being reported as unhandled.
    mmio.insert(console.uart(), region.base, region.size).context("placing the UART")?;
    Ok(console)
}
