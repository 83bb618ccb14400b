//! The in-kernel GICv3 (`KVM_DEV_TYPE_ARM_VGIC_V3`) and its ITS
//! (`KVM_DEV_TYPE_ARM_VGIC_ITS`), at the addresses the device tree declares
//! (Documentation/virt/kvm/devices/arm-vgic-v3.rst, arm-vgic-its.rst).
//!
//! Order: every vCPU is created first (the redistributor region covers one
//! 128 KiB frame pair per vCPU, and `KVM_DEV_ARM_VGIC_CTRL_INIT` "must be
//! called after all VCPUs have been created"), then the distributor and
//! redistributor addresses and the number of interrupts, the ITS with its
//! address, and the initialisation of both. Interrupt routes are set after
//! that: vgic_init() installs default routes of its own.

use anyhow::{Context, Result};
use kvm_bindings::{
    kvm_create_device, kvm_device_attr, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_ITS,
    kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3, KVM_DEV_ARM_VGIC_CTRL_INIT, KVM_DEV_ARM_VGIC_GRP_ADDR,
    KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, KVM_VGIC_ITS_ADDR_TYPE,
    KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST,
};
use kvm_ioctls::{DeviceFd, VmFd};

/// Interrupts of the vGIC (SGIs, PPIs and SPIs): a multiple of 32 between 64
/// and 1024 (arm-vgic-v3.rst, KVM_DEV_ARM_VGIC_GRP_NR_IRQS). 128 leaves SPIs
/// 0-95: the UART's and the 32 virtio-mmio windows' (up to SPI 47).
pub const NR_IRQS: u32 = 128;

/// The vGIC's device fds, kept open for the VM's lifetime.
#[derive(Debug)]
pub struct Gic {
    _gic: DeviceFd,
    _its: Option<DeviceFd>,
}

fn set_attr(fd: &DeviceFd, group: u32, attr: u64, value: Option<&u64>, what: &str) -> Result<()> {
    let attr = kvm_device_attr {
        group,
        attr,
        // KVM reads the value through this user pointer during the ioctl;
        // `value` outlives the call.
        addr: value.map_or(0, |v| v as *const u64 as u64),
        flags: 0,
    };
    fd.set_device_attr(&attr).with_context(|| format!("vGIC: setting {what} failed"))
}

fn create_device(vm: &VmFd, kind: u32, what: &str) -> Result<DeviceFd> {
    let mut device = kvm_create_device { type_: kind, fd: 0, flags: 0 };
    vm.create_device(&mut device).with_context(|| {
        format!("cannot create the in-kernel {what} (KVM_CREATE_DEVICE): does the host have a GICv3?")
    })
}

/// Creates and initialises the vGIC described by `gic` (redistributors for
/// exactly the vCPUs created so far) and its ITS if it has one.
pub fn create(vm: &VmFd, gic: &dmavm_fdt::GicV3) -> Result<Gic> {
    let fd = create_device(vm, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3, "GICv3")?;
    let dist = gic.distributor.base;
    let redist = gic.redistributors.base;
    set_attr(&fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST.into(), Some(&dist), "GICD")?;
    set_attr(&fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST.into(), Some(&redist), "GICR")?;
    // This group takes a 32-bit value.
    let nr: u32 = NR_IRQS;
    let attr = kvm_device_attr {
        group: KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
        attr: 0,
        // Read by KVM during the ioctl; `nr` outlives the call.
        addr: &nr as *const u32 as u64,
        flags: 0,
    };
    fd.set_device_attr(&attr).context("vGIC: setting the number of interrupts failed")?;
    let its = match gic.its {
        Some(region) => {
            let its = create_device(vm, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_ITS, "GICv3 ITS")?;
            set_attr(
                &its,
                KVM_DEV_ARM_VGIC_GRP_ADDR,
                KVM_VGIC_ITS_ADDR_TYPE.into(),
                Some(&region.base),
                "ITS",
            )?;
            set_attr(&its, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT.into(), None, "ITS init")?;
            Some(its)
        }
        None => None,
    };
    set_attr(&fd, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT.into(), None, "init")?;
    Ok(Gic { _gic: fd, _its: its })
}
