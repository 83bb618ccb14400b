//! Legacy platform devices on the port-I/O bus.

pub mod exit_port;
pub mod power;
pub mod serial;

pub use exit_port::{ExitPort, EXIT_PORT_ADDR};
pub use power::{PowerRegisters, PowerRequest, POWER_PORT_BASE, POWER_PORT_LEN};
pub use serial::{SerialPort, COM1_ADDR, COM1_IRQ, SERIAL_PORT_LEN};
