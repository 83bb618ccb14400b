//! The console UART on x86_64: COM1, vm-superio's 16550A on the port-I/O
//! bus, its interrupt an edge on IOAPIC pin 4 as on a PC. The UART itself
//! is the shared `crate::console`.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use dmavm_devices::interrupt::{InterruptError, InterruptLine};
use dmavm_devices::ioapic::{Ioapic, IoapicPin};
use dmavm_devices::legacy::{COM1_ADDR, COM1_IRQ, SERIAL_PORT_LEN};
use dmavm_devices::Bus;
use vm_superio::Trigger;

use crate::console::Console;

/// vm-superio's interrupt trigger as an edge on an IOAPIC pin (ISA
/// interrupts are edge-triggered, active high).
pub struct PinTrigger(IoapicPin);

impl Trigger for PinTrigger {
    type E = InterruptError;
    fn trigger(&self) -> Result<(), InterruptError> {
        self.0.pulse()
    }
}

/// COM1 on `pio`, raising its IOAPIC pin.
pub fn console(ioapic: &Arc<Mutex<Ioapic>>, pio: &Bus) -> Result<Console<PinTrigger>> {
    let line = IoapicPin::new(ioapic.clone(), COM1_IRQ).context("wiring COM1's interrupt")?;
    let console = Console::with_trigger(PinTrigger(line))?;
    pio.insert(console.uart(), COM1_ADDR, SERIAL_PORT_LEN).context("placing COM1")?;
    Ok(console)
}
