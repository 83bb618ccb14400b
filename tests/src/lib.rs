//! Test bed for dmavm: runs guest scenarios under real KVM and reads back
//! their results.
//!
//! A scenario is a shell script in `tests/scenarios/NAME.sh` that drives the
//! `dmavm` binary (usually booting a Linux guest whose init prints
//! `DMAVM key=value` lines) and exits 0 when what it checked holds. Scenarios
//! run with `DMAVM` (the static dmavm binary), `PAYLOADS` (directory of flat
//! binary payloads) and `GUEST` (guest kernel and initramfs) in their
//! environment.
//!
//! Where they run is chosen by [`Testbed::detect`] (or by the caller,
//! [`Testbed::choose`]):
//! - [`Testbed::Direct`] on a machine with hardware KVM (`kvm_intel` or
//!   `kvm_amd` loaded): the scripts run on the host;
//! - [`Testbed::Sandbox`] elsewhere (for example a PVM `/dev/kvm`, which cannot
//!   boot Linux): QEMU in pure emulation boots a Debian kernel (L1) on an
//!   emulated AMD CPU with SVM, that kernel loads `kvm-amd`, and the scenarios
//!   run inside it under real KVM; their output comes back framed on L1's
//!   serial console.
//!
//! [`run_scenarios`] prepares everything (Debian packages via
//! `resources/setup.sh`, guest kernel, initramfs,
//! payloads, static dmavm, sandbox image; all cached under `build/`) and
//! caches its results per scenario list, so the tests of one test binary
//! share a single sandbox boot when they all pass the same list.
//!
//! arm64 guests run in a separate sandbox under `qemu-system-aarch64` (see
//! [`arm64`]).
//!
//! Environment knobs: `DMAVM_TESTBED=direct|sandbox` forces a path,
//! `DMAVM_SCENARIO_TIMEOUT=SECS` sets the per-scenario limit (default 120),
//! `DMAVM_L1_QEMU=PATH` boots L1 with another `qemu-system-x86_64` than the
//! test bed's own (Debian 13's, unpacked under `build/qemu-x86`).

pub mod arm64;
mod build_lock;
mod command;
mod direct;
mod error;
mod frames;
mod l1_monitor;
mod log;
mod paths;
mod prepare;
mod run;
mod sandbox;
mod scenario;
mod scenario_header;
mod static_build;
mod testbed;

pub use error::{Error, Result};
pub use l1_monitor::{L1Monitor, LostWakeup, SILENCE_CHECK_PERIOD};
pub use paths::Paths;
pub use prepare::{install_packages, prepare, Artefacts};
pub use run::{run_scenario, run_scenarios, run_scenarios_uncached, scenario_timeout};
pub use sandbox::l1_qemu_args;
pub use scenario::{ScenarioResult, STATUS_TIMEOUT, STATUS_UNFINISHED};

/// The markers `resources/testbed/l1-init` prints on L1's serial console
/// (for runners of their own L1 images, such as `dmavm boot-test`).
pub mod l1_markers {
    pub use crate::frames::{BEGIN, DONE, END, ERROR, READY};
}
pub use static_build::build_static_dmavm;
pub use testbed::{Testbed, TestbedChoice, L1_QEMU_VAR, TESTBED_VAR};
