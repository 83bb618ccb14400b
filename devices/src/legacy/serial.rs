//! The 8250/16550A UART (vm-superio's model) on the port-I/O bus.

use std::io::Write;

use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};

use crate::bus::BusDevice;

/// COM1's I/O base.
pub const COM1_ADDR: u64 = 0x3f8;
/// COM1's ISA interrupt (an IOAPIC pin under the usual identity mapping).
pub const COM1_IRQ: u32 = 4;
/// Registers of one UART.
pub const SERIAL_PORT_LEN: u64 = 8;

/// A UART whose transmitter writes to `W`, whose interrupt goes to `T` and
/// whose receive-side events (the guest drained the input FIFO) go to `EV`,
/// so the owner can stop reading host input while the FIFO is full.
pub struct SerialPort<T: Trigger, EV: SerialEvents, W: Write> {
    uart: Serial<T, EV, W>,
}

impl<T: Trigger, EV: SerialEvents, W: Write> std::fmt::Debug for SerialPort<T, EV, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialPort").finish_non_exhaustive()
    }
}

impl<T: Trigger, EV: SerialEvents, W: Write> SerialPort<T, EV, W> {
    /// A UART in its reset state.
    pub fn new(interrupt: T, events: EV, out: W) -> Self {
        Self { uart: Serial::with_events(interrupt, events, out) }
    }

    /// How many bytes of host input the receive FIFO takes now.
    pub fn input_capacity(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// Queues host input for the guest; returns how many bytes were taken
    /// (the rest must be offered again once the guest has drained the FIFO).
    pub fn enqueue_input(&mut self, input: &[u8]) -> usize {
        let take = input.len().min(self.uart.fifo_capacity());
        match self.uart.enqueue_raw_bytes(&input[..take]) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("serial: cannot deliver input: {e:?}");
                0
            }
        }
    }
}

impl<T, EV, W> BusDevice for SerialPort<T, EV, W>
where
    T: Trigger + Send,
    EV: SerialEvents + Send,
    W: Write + Send,
{
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // The 8250 has byte-wide registers; a wider or out-of-range access
        // reads as a floating bus.
        match (u8::try_from(offset), data) {
            (Ok(off), [b]) if u64::from(off) < SERIAL_PORT_LEN => *b = self.uart.read(off),
            (_, data) => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(off), [b]) = (u8::try_from(offset), data) {
            if u64::from(off) < SERIAL_PORT_LEN {
                if let Err(e) = self.uart.write(off, *b) {
                    // Output errors (a closed stdout) must not stop the guest.
                    log::debug!("serial: write to register {off}: {e:?}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use vm_superio::serial::NoEvents;

    #[derive(Default, Clone)]
    struct Count(Arc<AtomicUsize>);
    impl Trigger for Count {
        type E = std::convert::Infallible;
        fn trigger(&self) -> Result<(), Self::E> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn transmits_and_receives() {
        let irq = Count::default();
        let mut port = SerialPort::new(irq.clone(), NoEvents, Vec::new());
        port.write(1, &[0x01]); // IER: received-data interrupt
        for b in b"hi" {
            port.write(0, &[*b]);
        }
        assert_eq!(port.uart.writer(), b"hi");
        assert_eq!(port.enqueue_input(b"x"), 1);
        assert!(irq.0.load(Ordering::SeqCst) >= 1);
        let mut b = [0u8];
        port.read(0, &mut b);
        assert_eq!(&b, b"x");
    }

    /// A guest that never reads its receive buffer: the UART holds one
    /// FIFO of host input (vm-superio's 64 bytes) and takes no more; the
    /// rest is the host's to keep (the event loop's bounded pending input).
    #[test]
    fn input_stops_at_a_full_fifo() {
        let mut port = SerialPort::new(Count::default(), NoEvents, Vec::new());
        let taken = port.enqueue_input(&[b'a'; 1000]);
        // vm-superio's `FIFO_SIZE` (0x40), which it does not export.
        assert_eq!(taken, 64);
        assert_eq!(port.enqueue_input(&[b'b'; 1000]), 0);
        let mut b = [0u8];
        port.read(0, &mut b);
        assert_eq!(port.enqueue_input(b"bc"), 1);
    }

    #[test]
    fn odd_accesses_are_harmless() {
        let mut port = SerialPort::new(Count::default(), NoEvents, Vec::new());
        let mut wide = [0u8; 4];
        port.read(0, &mut wide);
        assert_eq!(wide, [0xff; 4]);
        port.write(0, &[1, 2]);
        port.write(9, &[1]);
        port.write(u64::MAX, &[1]);
        port.read(u64::MAX, &mut wide[..1]);
        assert!(port.uart.writer().is_empty());
    }
}
