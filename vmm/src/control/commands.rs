//! Carrying out control-socket requests on the running VM.

use std::sync::Arc;

use dmavm_iommu::IommuHandle;
use dmavm_machine::hotplug::HotplugError;
use dmavm_machine::input_file::{self, Purpose};
use dmavm_machine::{DeviceKind, Machine};
use serde_json::{json, Value};

use super::protocol::{ErrorCode, Failure, Request};
use crate::hotplug::Hotplug;
use crate::pause::PauseGate;
use crate::shutdown::{ExitReason, Shutdown};
use crate::stats;

/// What the control socket acts on.
#[derive(Debug)]
pub struct VmControl {
    /// The machine model of the running VM.
    pub machine: Machine,
    /// The kernel command line and the initrd's size: `info` describes the
    /// firmware, whose aarch64 `/chosen` holds them.
    pub cmdline: String,
    /// See `cmdline`.
    pub initrd_size: Option<u64>,
    /// The virtio-iommu's counters, when the machine has one.
    pub iommu: Option<IommuHandle>,
    /// The stop request.
    pub shutdown: Arc<Shutdown>,
    /// The vCPUs' pause gate.
    pub pause: Arc<PauseGate>,
    /// The hot-plug controller's side (x86_64 machines): devices plugged
    /// in and out, the power button.
    pub hotplug: Option<Hotplug>,
}

/// How a request is answered.
#[derive(Debug)]
pub enum Answer {
    /// Now, with this reply.
    Now(Result<Value, Failure>),
    /// Once the guest ejected device `id` (see [`VmControl::ejected`]), or
    /// the wait for it timed out.
    AfterEject(String),
}

/// A device the guest ejected, withdrawn: its reply.
pub type Ejected = (String, Result<Value, Failure>);

impl VmControl {
    /// Carries out `request`; the reply's value or why it failed, or that
    /// the reply waits for the guest. A failed request changes nothing.
    pub fn handle(&mut self, request: Request) -> Answer {
        match request {
            Request::RemoveDevice { id } => match self.remove_device(&id) {
                Ok(()) => Answer::AfterEject(id),
                Err(f) => Answer::Now(Err(f)),
            },
            request => Answer::Now(self.handle_now(request)),
        }
    }

    fn handle_now(&mut self, request: Request) -> Result<Value, Failure> {
        match request {
            Request::Info => self.info(),
            Request::Stats => Ok(self.stats()),
            Request::AddDevice { kind, options } => self.add_device(&kind, &options),
            Request::RemoveDevice { .. } => {
                Err(Failure::new(ErrorCode::Internal, "a removal is answered once the guest ejects"))
            }
            Request::Pause => {
                if self.pause.is_paused() {
                    return Err(Failure::new(ErrorCode::InvalidState, "the VM is paused already"));
                }
                self.pause.pause().map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?;
                Ok(json!({"state": "paused"}))
            }
            Request::Resume => {
                if !self.pause.is_paused() {
                    return Err(Failure::new(ErrorCode::InvalidState, "the VM is running, not paused"));
                }
                self.pause.resume();
                Ok(json!({"state": "running"}))
            }
            Request::Shutdown => {
                let Some(hotplug) = &self.hotplug else {
                    return Err(Failure::new(
                        ErrorCode::Unsupported,
                        "this machine has no ACPI power button to press; `quit` ends the VM without asking the guest",
                    ));
                };
                hotplug
                    .press_power_button()
                    .map_err(|e| Failure::new(ErrorCode::Internal, format!("{e:#}")))?;
                Ok(json!({"state": "power-button-pressed"}))
            }
            Request::Quit => {
                self.shutdown.request(ExitReason::Quit);
                Ok(json!({"state": "stopping"}))
            }
        }
    }

    fn state(&self) -> &'static str {
        if self.pause.is_paused() {
            "paused"
        } else {
            "running"
        }
    }

    fn info(&self) -> Result<Value, Failure> {
        let internal = |e: &dyn std::fmt::Display| Failure::new(ErrorCode::Internal, e.to_string());
        let described =
            dmavm_machine::describe::describe_machine(&self.machine, &self.cmdline, self.initrd_size)
                .map_err(|e| internal(&e))?;
        let machine = serde_json::to_value(&described.description).map_err(|e| internal(&e))?;
        Ok(json!({"state": self.state(), "machine": machine}))
    }

    fn stats(&self) -> Value {
        let Some(iommu) = &self.iommu else {
            return json!({"iommu": false, "endpoints": [], "faults_dropped": 0});
        };
        let endpoints: Vec<Value> = stats::by_device(&self.machine, iommu)
            .into_iter()
            .map(|(id, s)| {
                json!({
                    "device": id,
                    "endpoint": s.endpoint,
                    "domain": s.domain,
                    "map_requests": s.map_requests,
                    "unmap_requests": s.unmap_requests,
                    "translations": s.translations,
                    "iotlb_misses": s.iotlb_misses,
                    "faults": s.faults,
                    "attach_refused": s.attach_refused,
                })
            })
            .collect();
        json!({"iommu": true, "endpoints": endpoints, "faults_dropped": iommu.faults_dropped()})
    }

    fn add_device(&mut self, kind: &str, options: &str) -> Result<Value, Failure> {
        let options = dmavm_machine::options::parse_device(kind, options)
            .map_err(|e| Failure::new(ErrorCode::InvalidDevice, e))?;
        let added = self.machine.hot_add(&options).map_err(hotplug_failure)?;
        let device = &added.device;
        if let DeviceKind::Disk { path, readonly } = &device.kind {
            input_file::check(path, Purpose::Disk { writable: !readonly })
                .map_err(|e| Failure::new(ErrorCode::InvalidDevice, format!("{}: {e}", device.id)))?;
        }
        let Some(hotplug) = &mut self.hotplug else {
            return Err(Failure::new(
                ErrorCode::Unsupported,
                format!("{}: this machine has no hot-plug controller; nothing was added", device.id),
            ));
        };
        if !matches!(device.kind, DeviceKind::Disk { .. } | DeviceKind::Rng | DeviceKind::Console) {
            return Err(Failure::new(
                ErrorCode::NotHotpluggable,
                format!(
                    "{}: only a disk, an rng or a console is plugged in while the VM runs \
                     (a network device's TAP is wired at boot)",
                    device.id
                ),
            ));
        }
        hotplug
            .plug(&added.machine, device)
            .map_err(|e| Failure::new(ErrorCode::InvalidDevice, format!("{e:#}")))?;
        let reply = json!({
            "id": device.id,
            "pci": pci_address(device),
            // In the IOMMU's scope (its DMA translated), as the firmware
            // tables declared the slot at boot.
            "translated": device.dma.endpoint().is_some(),
        });
        log::info!("control socket: {} plugged in at {}", device.id, pci_address(device));
        self.machine = added.machine;
        Ok(reply)
    }

    /// Checks that `id` may leave and asks the guest to eject it.
    fn remove_device(&mut self, id: &str) -> Result<(), Failure> {
        let (_, device) = self.machine.hot_remove(id).map_err(hotplug_failure)?;
        let Some(hotplug) = &mut self.hotplug else {
            return Err(Failure::new(
                ErrorCode::Unsupported,
                format!("{}: this machine has no hot-plug controller; nothing was removed", device.id),
            ));
        };
        if !hotplug.is_plugged(id) {
            return Err(Failure::new(
                ErrorCode::NotHotpluggable,
                format!("{id}: only a disk, an rng or a console leaves while the VM runs"),
            ));
        }
        hotplug.request_removal(id).map_err(|e| Failure::new(ErrorCode::Internal, format!("{e:#}")))
    }

    /// Withdraws every device the guest ejected since the last call, and
    /// drops it from the model; each one's id and reply.
    pub fn ejected(&mut self) -> Vec<Ejected> {
        let Some(hotplug) = &mut self.hotplug else { return Vec::new() };
        let mut done = Vec::new();
        for (segment, slot) in hotplug.ejects().take() {
            let Some(id) = hotplug.device_at(segment, slot) else { continue };
            let result = match hotplug.withdraw(&id) {
                Ok(()) => {
                    if let Ok((machine, _)) = self.machine.hot_remove(&id) {
                        self.machine = machine;
                    }
                    log::info!("control socket: the guest ejected {id}; it is unplugged");
                    Ok(json!({"removed": id}))
                }
                Err(e) => Err(Failure::new(ErrorCode::Internal, format!("{e:#}"))),
            };
            done.push((id, result));
        }
        done
    }

    /// The descriptor that becomes readable when the guest ejected a
    /// device.
    pub fn eject_event(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.hotplug.as_ref().map(|h| h.ejects().event().as_raw_fd())
    }
}

/// `SSSS:00:DD.0` of a PCI device.
fn pci_address(device: &dmavm_machine::Device) -> String {
    match device.placement {
        dmavm_machine::Placement::Pci { segment, slot } => format!("{segment:04x}:00:{slot:02x}.0"),
        dmavm_machine::Placement::Mmio { window } => format!("virtio-mmio window {window}"),
    }
}

fn hotplug_failure(e: HotplugError) -> Failure {
    let code = match e {
        HotplugError::Placement(_) => ErrorCode::Placement,
        HotplugError::NotHotpluggable(_) => ErrorCode::NotHotpluggable,
        HotplugError::Refused(_) => ErrorCode::CheckFailed,
    };
    Failure::new(code, e.to_string())
}
