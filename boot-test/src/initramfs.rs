//! The guest's initramfs: the one `resources/guest/build-initramfs.sh`
//! builds (dmavm carries a copy of the recipe, so that a user needs nothing
//! but a kernel), or the user's, and on top of either a small cpio archive
//! with the harness's check and the kernel-log patterns (Linux unpacks
//! concatenated archives in order, later files replacing earlier ones).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{io, last_line, Error};

use super::guest_files::{
    BOOT_TEST_CHECK, BUILD_INITRAMFS, DMAVM_EXIT_C, INIT, VFIO_BLK_FAULT_C, VFIO_DOMAINS_C,
};

/// The recipe and what it packs, under the names the recipe expects.
const RECIPE: &[(&str, &str)] = &[
    ("build-initramfs.sh", BUILD_INITRAMFS),
    ("init", INIT),
    ("dmavm-exit.c", DMAVM_EXIT_C),
    ("vfio-domains.c", VFIO_DOMAINS_C),
    ("vfio-blk-fault.c", VFIO_BLK_FAULT_C),
    ("checks/boot-test.sh", BOOT_TEST_CHECK),
];

/// Builds a busybox initramfs into `work/initramfs.cpio.gz` with the
/// recipe, taking the virtio modules from `modules` when given.
pub fn build(modules: Option<&Path>, work: &Path) -> Result<PathBuf, Error> {
    let recipe = work.join("guest");
    std::fs::create_dir_all(recipe.join("checks")).map_err(io(format!("creating {}", recipe.display())))?;
    for (name, text) in RECIPE {
        let path = recipe.join(name);
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
    }
    let out = work.join("initramfs.cpio.gz");
    let mut cmd = Command::new("bash");
    cmd.arg(recipe.join("build-initramfs.sh")).arg("--out").arg(&out);
    if let Some(dir) = modules {
        cmd.arg("--modules").arg(dir);
    }
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io("running bash for the initramfs recipe (build-initramfs.sh)"))?;
    if !output.status.success() {
        return Err(Error::Step { what: "building the initramfs".into(), last: last_line(&output.stderr) });
    }
    Ok(out)
}

fn push_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let namesize = name.len() + 1;
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0,
        0,
        1,
        0,
        data.len(),
        0,
        0,
        0,
        0,
        0
    );
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out.extend_from_slice(data);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// An uncompressed newc cpio archive with the check and the patterns.
pub fn overlay(patterns: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    let text: String = patterns.iter().map(|p| format!("{p}\n")).collect();
    push_entry(&mut out, 1, "checks", 0o040_755, &[]);
    push_entry(&mut out, 2, "checks/boot-test.sh", 0o100_755, BOOT_TEST_CHECK.as_bytes());
    push_entry(&mut out, 3, "etc", 0o040_755, &[]);
    push_entry(&mut out, 4, "etc/boot-test", 0o040_755, &[]);
    push_entry(&mut out, 5, "etc/boot-test/patterns", 0o100_644, text.as_bytes());
    push_entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

/// Writes `initrd` followed by `overlay` (4-byte aligned) to `out`.
pub fn compose(initrd: &Path, overlay: &[u8], out: &Path) -> Result<(), Error> {
    let mut data = std::fs::read(initrd).map_err(io(format!("reading the initrd {}", initrd.display())))?;
    while data.len() % 4 != 0 {
        data.push(0);
    }
    data.extend_from_slice(overlay);
    std::fs::write(out, data).map_err(io(format!("writing {}", out.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_is_a_newc_archive() {
        let o = overlay(&["BUG:".to_string(), "a|b".to_string()]);
        assert_eq!(o.len() % 4, 0);
        assert!(o.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&o);
        assert!(text.contains("checks/boot-test.sh\0"));
        assert!(text.contains("etc/boot-test/patterns\0"));
        assert!(text.contains("BUG:\na|b\n"));
        assert!(text.contains("TRAILER!!!\0"));
        // Each header's name size counts the NUL; the first entry's data
        // (a directory) is empty.
        assert_eq!(&o[94..102], b"00000007");
        assert!(BOOT_TEST_CHECK.contains("bt_done=1"));
    }

    /// The archive as cpio(1) reads it, where cpio is installed.
    #[test]
    fn cpio_reads_the_overlay() {
        let Ok(mut child) = Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        else {
            return;
        };
        use std::io::Write;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&overlay(&["x".into()])).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "checks\nchecks/boot-test.sh\netc\netc/boot-test\netc/boot-test/patterns\n"
        );
    }
}
