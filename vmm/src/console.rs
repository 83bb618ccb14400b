//! The guest console: a 16550A UART (vm-superio) wired to dmavm's stdout
//! and stdin, its interrupt whatever the architecture raises it with
//! (`arch::uart`: an IOAPIC pin for COM1 on x86_64, an SPI on arm64).

use std::io::Stdout;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use dmavm_devices::legacy::SerialPort;
use vm_superio::serial::SerialEvents;
use vm_superio::Trigger;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::console_input::InputSink;

/// Signals the event loop when the guest has drained the receive FIFO, so
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

/// The console UART, interrupting through `T`.
pub type Uart<T> = SerialPort<T, DrainedEvent, Stdout>;

impl<T: Trigger + Send> InputSink for Uart<T> {
    fn push(&mut self, bytes: &[u8]) -> usize {
        self.enqueue_input(bytes)
    }
}

/// The console UART and the event that reports its drained input buffer.
pub struct Console<T: Trigger> {
    uart: Arc<Mutex<Uart<T>>>,
    drained: EventFd,
}

impl<T: Trigger> std::fmt::Debug for Console<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl<T: Trigger + Send + 'static> Console<T> {
    /// A UART raising its interrupt through `trigger`.
    pub fn with_trigger(trigger: T) -> Result<Self> {
        let drained =
            EventFd::new(EFD_NONBLOCK | libc::EFD_CLOEXEC).context("cannot create the console event")?;
        let events = DrainedEvent(drained.try_clone().context("cannot clone the console event")?);
        let uart = SerialPort::new(trigger, events, std::io::stdout());
        Ok(Self { uart: Arc::new(Mutex::new(uart)), drained })
    }

    /// The UART as a bus device.
    pub fn uart(&self) -> Arc<Mutex<Uart<T>>> {
        self.uart.clone()
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
