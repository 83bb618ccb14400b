//! Virtio: the device contract, the transports and the devices.

pub mod device;

pub use device::{
    Activation, DeviceError, InterruptKind, VirtioDevice, VirtioInterrupt, VIRTIO_F_ACCESS_PLATFORM,
    VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
