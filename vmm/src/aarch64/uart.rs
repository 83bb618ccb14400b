//! The console UART on arm64: vm-superio's 16550A (the model COM1 uses on
//! x86_64) on the MMIO bus, byte registers at consecutive addresses, declared
//! `ns16550a` in the device tree, its interrupt an edge on an SPI raised by
//! irqfd. Output goes to dmavm's stdout, input comes from the event loop.

use std::io::Stdout;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use dmavm_devices::legacy::SerialPort;
use dmavm_devices::Bus;
use kvm_ioctls::VmFd;
use vm_superio::serial::SerialEvents;
use vm_superio::Trigger;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::interrupts::{GsiRouter, IrqfdPin};
use crate::event_loop::InputSink;

/// The GSI the UART's irqfd uses (routed to its SPI); below the machine
/// model's virtio-mmio GSIs (5 and up).
pub const GSI: u32 = 1;

/// vm-superio's interrupt trigger as an edge on the UART's SPI.
pub struct SpiTrigger(IrqfdPin);

impl Trigger for SpiTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.trigger()
    }
}

/// Signals the event loop when the guest drained the receive FIFO, so
/// paused console input resumes.
pub struct DrainedEvent(EventFd);

impl SerialEvents for DrainedEvent {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        // Failure only means the counter is saturated: a wake-up is pending.
        let _ = self.0.write(1);
    }
}

/// The UART type of the arm64 console.
pub type Uart = SerialPort<SpiTrigger, DrainedEvent, Stdout>;

impl InputSink for Uart {
    fn push(&mut self, bytes: &[u8]) -> usize {
        self.enqueue_input(bytes)
    }
}

/// The console UART and the event that reports its drained input buffer.
pub struct Console {
    uart: Arc<Mutex<Uart>>,
    drained: EventFd,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Console {
    /// The UART at `region` on `mmio`, raising SPI `spi`.
    pub fn new(
        vm: &VmFd,
        router: &GsiRouter,
        mmio: &Bus,
        region: dmavm_fdt::MemoryRange,
        spi: u32,
    ) -> Result<Self> {
        router.route_spi(GSI, spi)?;
        let line = IrqfdPin::new(vm, GSI).context("wiring the UART's interrupt")?;
        let drained = EventFd::new(EFD_NONBLOCK).context("cannot create the console event")?;
        let events = DrainedEvent(drained.try_clone().context("cannot clone the console event")?);
        let uart = Arc::new(Mutex::new(SerialPort::new(SpiTrigger(line), events, std::io::stdout())));
        // The whole page: accesses beyond the eight registers read as a
        // floating bus instead of being reported as unhandled.
        mmio.insert(uart.clone(), region.base, region.size).context("placing the UART")?;
        Ok(Self { uart, drained })
    }

    /// The UART as the event loop's console input.
    pub fn input(&self) -> Arc<Mutex<dyn InputSink>> {
        self.uart.clone()
    }

    /// The event that fires when the guest drained the receive FIFO.
    pub fn drained_event(&self) -> Result<EventFd> {
        self.drained.try_clone().context("cannot clone the console event")
    }
}
