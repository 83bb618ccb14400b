//! Carrying out control-socket requests on the running VM.

use std::sync::Arc;

use dmavm_iommu::IommuHandle;
use dmavm_machine::hotplug::HotplugError;
use dmavm_machine::input_file::{self, Purpose};
use dmavm_machine::{DeviceKind, Machine};
use serde_json::{json, Value};

use super::protocol::{ErrorCode, Failure, Request};
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
}

impl VmControl {
    /// Carries out `request`; the reply's value or why it failed. A failed
    /// request changes nothing.
    pub fn handle(&mut self, request: Request) -> Result<Value, Failure> {
        match request {
            Request::Info => self.info(),
            Request::Stats => Ok(self.stats()),
            Request::AddDevice { kind, options } => self.add_device(&kind, &options),
            Request::RemoveDevice { id } => self.remove_device(&id),
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
            // The hardware-reduced ACPI machine declares no power button
            // (FADT PWR_BUTTON set, no Generic Event Device): the guest
            // cannot be asked, only stopped.
            Request::Shutdown => Err(Failure::new(
                ErrorCode::Unsupported,
                "this machine has no ACPI power button to press; `quit` ends the VM without asking the guest",
            )),
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
        if let DeviceKind::Disk { path, readonly } = &added.device.kind {
            input_file::check(path, Purpose::Disk { writable: !readonly })
                .map_err(|e| Failure::new(ErrorCode::InvalidDevice, format!("{}: {e}", added.device.id)))?;
        }
        Err(Failure::new(
            ErrorCode::Unsupported,
            format!(
                "{}: the machine model accepts it, but this dmavm cannot announce a device to a running guest \
                 (no ACPI hot-plug controller); nothing was added",
                added.device.id
            ),
        ))
    }

    fn remove_device(&mut self, id: &str) -> Result<Value, Failure> {
        let (_, device) = self.machine.hot_remove(id).map_err(hotplug_failure)?;
        Err(Failure::new(
            ErrorCode::Unsupported,
            format!(
                "{}: this dmavm cannot ask a running guest to eject a device (no ACPI hot-plug controller); \
                 nothing was removed",
                device.id
            ),
        ))
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
