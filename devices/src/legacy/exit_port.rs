//! The exit device: one I/O port that ends dmavm with a status the guest
//! chooses.
//!
//! Test payloads and guest check scripts write one byte to port
//! [`EXIT_PORT_ADDR`]; dmavm then stops the VM and exits with exactly that
//! byte as its status. It is QEMU's `isa-debug-exit` location (0xf4) but not
//! its encoding: QEMU exits with `(value << 1) | 1`, dmavm with `value`, so a
//! guest can report 0 for success. Only the first byte of a wider access
//! counts; reads return 0.

use crate::bus::BusDevice;

/// The exit device's I/O port.
pub const EXIT_PORT_ADDR: u64 = 0xf4;

/// Hands a guest-written status to whoever stops the VM.
pub struct ExitPort {
    on_exit: Box<dyn Fn(u8) + Send>,
}

impl std::fmt::Debug for ExitPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitPort").finish_non_exhaustive()
    }
}

impl ExitPort {
    /// `on_exit` is called with the status byte on every guest write.
    pub fn new(on_exit: impl Fn(u8) + Send + 'static) -> Self {
        Self { on_exit: Box::new(on_exit) }
    }
}

impl BusDevice for ExitPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (0, Some(&status)) = (offset, data.first()) {
            (self.on_exit)(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn reports_first_byte_of_each_write() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut port = ExitPort::new(move |v| s.lock().unwrap().push(v));
        port.write(0, &[7]);
        port.write(0, &[3, 9, 9, 9]);
        port.write(0, &[]);
        let mut buf = [0xffu8; 2];
        port.read(0, &mut buf);
        assert_eq!(buf, [0, 0]);
        assert_eq!(*seen.lock().unwrap(), vec![7, 3]);
    }
}
