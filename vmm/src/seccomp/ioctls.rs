//! The ioctl request numbers the filters allow, computed as the kernel's
//! `_IO`/`_IOR`/`_IOW` macros do (linux/kvm.h) from the argument structs
//! kvm-bindings defines for this architecture.

#![allow(non_snake_case)]

use kvm_bindings::{kvm_ioeventfd, kvm_irq_routing, kvm_irqfd, kvm_msi, KVMIO};
use vmm_sys_util::{ioctl_io_nr, ioctl_iow_nr};

ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_iow_nr!(KVM_SET_GSI_ROUTING, KVMIO, 0x6a, kvm_irq_routing);
ioctl_iow_nr!(KVM_IOEVENTFD, KVMIO, 0x79, kvm_ioeventfd);
ioctl_iow_nr!(KVM_SIGNAL_MSI, KVMIO, 0xa5, kvm_msi);
ioctl_iow_nr!(KVM_IRQFD, KVMIO, 0x76, kvm_irqfd);

#[cfg(target_arch = "x86_64")]
mod x86_64 {
    use kvm_bindings::{kvm_regs, kvm_sregs, KVMIO};
    use vmm_sys_util::ioctl_ior_nr;
    ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
    ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
}
#[cfg(target_arch = "x86_64")]
pub use x86_64::{KVM_GET_REGS, KVM_GET_SREGS};

#[cfg(target_arch = "aarch64")]
mod aarch64 {
    use kvm_bindings::{kvm_one_reg, KVMIO};
    use vmm_sys_util::ioctl_iow_nr;
    ioctl_iow_nr!(KVM_GET_ONE_REG, KVMIO, 0xab, kvm_one_reg);
}
#[cfg(target_arch = "aarch64")]
pub use aarch64::KVM_GET_ONE_REG;

/// `tcgetattr(3)` and `tcsetattr(3)` with `TCSANOW`.
// The requests' type is the C library's `ioctl` argument type, not always
// 64 bits.
#[allow(clippy::unnecessary_cast)]
pub const TERMINAL: [u64; 2] = [libc::TCGETS as u64, libc::TCSETS as u64];

/// `TUNSETOFFLOAD`: a virtio-net device hands its TAP the offloads the
/// driver accepted when the driver sets `DRIVER_OK` (a vCPU exit) or
/// resets it (the offloads go back to none).
// The request's type is the C library's `ioctl` argument type.
#[allow(clippy::unnecessary_cast)]
pub const TAP_OFFLOADS: u64 = libc::TUNSETOFFLOAD as u64;

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers from linux/kvm.h as the C compiler computes them
    /// (`printf("%#lx", KVM_RUN)` ...), which the macros must reproduce.
    #[test]
    fn kvm_request_numbers_match_the_kernel_headers() {
        assert_eq!(KVM_RUN(), 0xae80);
        assert_eq!(KVM_SET_GSI_ROUTING(), 0x4008_ae6a);
        assert_eq!(KVM_IOEVENTFD(), 0x4040_ae79);
        assert_eq!(KVM_SIGNAL_MSI(), 0x4020_aea5);
        assert_eq!(KVM_IRQFD(), 0x4020_ae76);
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(KVM_GET_REGS(), 0x8090_ae81);
            assert_eq!(KVM_GET_SREGS(), 0x8138_ae83);
        }
        #[cfg(target_arch = "aarch64")]
        assert_eq!(KVM_GET_ONE_REG(), 0x4010_aeab);
        // linux/if_tun.h: _IOW('T', 208, unsigned int).
        assert_eq!(TAP_OFFLOADS, 0x4004_54d0);
    }
}
