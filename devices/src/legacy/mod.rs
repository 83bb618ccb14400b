//! Legacy platform devices: serial port, exit port.
