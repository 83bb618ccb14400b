//! Virtio: the device contract, the transports and the devices.

pub mod block;
pub mod chain;
mod config_bytes;
pub mod console;
pub mod device;
pub mod dma_access;
pub mod mmio;
pub mod net;
pub mod pci;
pub mod pool_memory;
pub mod queue;
pub mod rng;
mod transport;

pub use block::{Block, BlockConfig, BlockError, BLOCK_ID_BYTES, BLOCK_QUEUE_SIZE};
pub use console::{Console, ConsoleError, ConsoleInput, CONSOLE_QUEUE_SIZE, CONSOLE_TRANSMIT_BUDGET};
pub use device::{
    Activation, DeviceError, InterruptKind, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
pub use dma_access::{DmaAccess, VIRTIO_F_ACCESS_PLATFORM};
pub use mmio::{MmioError, MmioTransport};
pub use pci::VirtioPciTransport;
pub use pool_memory::{pool_memory, PoolBounds, PoolCounters, PoolError, PoolMemory};
pub use rng::{Rng, RNG_MAX_BYTES_PER_REQUEST, RNG_QUEUE_SIZE};
pub use transport::{status, TransportError, VirtioTransport};
