//! Where the test bed finds its inputs and puts its artefacts.

use std::path::{Path, PathBuf};

/// Paths of the repository checkout the crate was built from. Every
/// artefact lives under `build/` at the repository root (gitignored).
#[derive(Debug, Clone)]
pub struct Paths {
    /// The repository root.
    pub root: PathBuf,
}

impl Paths {
    /// The paths of this checkout (from `CARGO_MANIFEST_DIR` at build time).
    pub fn new() -> Self {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest.parent().map_or_else(|| manifest.join(".."), Path::to_path_buf);
        Paths { root }
    }

    /// `build/`: all artefacts and caches.
    pub fn build(&self) -> PathBuf {
        self.root.join("build")
    }

    /// `build/guest/`: the guest kernel (vmlinuz, vmlinux), modules and
    /// initramfs; passed to scenarios as `GUEST`.
    pub fn guest(&self) -> PathBuf {
        self.build().join("guest")
    }

    /// `build/payloads/`: flat binary payloads; passed as `PAYLOADS`.
    pub fn payloads(&self) -> PathBuf {
        self.build().join("payloads")
    }

    /// `build/testbed/`: the sandbox image.
    pub fn testbed(&self) -> PathBuf {
        self.build().join("testbed")
    }

    /// `build/testbed/logs/`: one log per scenario run.
    pub fn logs(&self) -> PathBuf {
        self.testbed().join("logs")
    }

    /// `build/testbed/l1.cpio`: the sandbox (L1) initramfs.
    pub fn l1_cpio(&self) -> PathBuf {
        self.testbed().join("l1.cpio")
    }

    /// `build/qemu-x86/bin/qemu-system-x86_64`: the QEMU that boots the
    /// sandbox's L1 (Debian 13's, unpacked by
    /// `resources/testbed/fetch-qemu.sh`).
    pub fn l1_qemu(&self) -> PathBuf {
        self.build().join("qemu-x86").join("bin").join("qemu-system-x86_64")
    }

    /// `build/target-static/`: cargo target dir of the static dmavm build,
    /// separate so it never contends with the normal target dir.
    pub fn target_static(&self) -> PathBuf {
        self.build().join("target-static")
    }

    /// `resources/`: setup and image-building scripts.
    pub fn resources(&self) -> PathBuf {
        self.root.join("resources")
    }

    /// `tests/scenarios/`: the scenario scripts.
    pub fn scenarios(&self) -> PathBuf {
        self.root.join("tests").join("scenarios")
    }

    /// The script of scenario `name`.
    pub fn scenario(&self, name: &str) -> PathBuf {
        self.scenarios().join(format!("{name}.sh"))
    }
}

impl Default for Paths {
    fn default() -> Self {
        Self::new()
    }
}
