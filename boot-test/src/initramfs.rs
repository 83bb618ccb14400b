//! The guest's initramfs: the one `resources/guest/build-initramfs.sh`
//! builds (dmavm carries a copy of the recipe, so that a user needs nothing
//! but a kernel), or the user's, and on top of either a small cpio archive
//! with the harness's check and the kernel-log patterns (Linux unpacks
//! concatenated archives in order, later files replacing earlier ones).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{io, last_line, Error};

use super::guest_files::{
    BOOT_TEST_CHECK, BUILD_INITRAMFS, DMAR_STRUCTURES, DMAVM_EXIT_C, INIT, NET_EXCHANGE, VFIO_BLK_FAULT_C,
    VFIO_DOMAINS_C,
};

/// The recipe and what it packs, under the names the recipe expects.
const RECIPE: &[(&str, &str)] = &[
    ("build-initramfs.sh", BUILD_INITRAMFS),
    ("init", INIT),
    ("dmavm-exit.c", DMAVM_EXIT_C),
    ("vfio-domains.c", VFIO_DOMAINS_C),
    ("vfio-blk-fault.c", VFIO_BLK_FAULT_C),
    ("checks/boot-test.sh", BOOT_TEST_CHECK),
    ("checks/dmar-structures.sh", DMAR_STRUCTURES),
    ("checks/net-exchange.sh", NET_EXCHANGE),
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

/// An uncompressed newc cpio archive with the check (and the DMAR reader
/// and network exchange it runs) and the patterns.
pub fn overlay(patterns: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    let text: String = patterns.iter().map(|p| format!("{p}\n")).collect();
    push_entry(&mut out, 1, "checks", 0o040_755, &[]);
    push_entry(&mut out, 2, "checks/boot-test.sh", 0o100_755, BOOT_TEST_CHECK.as_bytes());
    push_entry(&mut out, 3, "checks/dmar-structures.sh", 0o100_755, DMAR_STRUCTURES.as_bytes());
    push_entry(&mut out, 4, "checks/net-exchange.sh", 0o100_755, NET_EXCHANGE.as_bytes());
    push_entry(&mut out, 5, "etc", 0o040_755, &[]);
    push_entry(&mut out, 6, "etc/boot-test", 0o040_755, &[]);
    push_entry(&mut out, 7, "etc/boot-test/patterns", 0o100_644, text.as_bytes());
    push_entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

/// An uncompressed newc cpio archive of everything below `root`, named
/// relative to it (folders before what they hold), every file executable:
/// what is added to an emulated host's initramfs.
pub fn archive_dir(root: &Path) -> Result<Vec<u8>, Error> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Option<PathBuf>)>) -> Result<(), Error> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(format!("reading {}", dir.display())))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io(format!("reading {}", dir.display())))?;
        entries.sort();
        for path in entries {
            let name = path.strip_prefix(root).unwrap_or(&path).display().to_string();
            if path.is_dir() {
                out.push((name, None));
                walk(root, &path, out)?;
            } else {
                out.push((name, Some(path)));
            }
        }
        Ok(())
    }
    let mut entries = Vec::new();
    walk(root, root, &mut entries)?;
    let mut out = Vec::new();
    for (ino, (name, file)) in (1u32..).zip(entries) {
        match file {
            None => push_entry(&mut out, ino, &name, 0o040_755, &[]),
            Some(path) => {
                let data = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
                push_entry(&mut out, ino, &name, 0o100_755, &data);
            }
        }
    }
    push_entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    Ok(out)
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

    /// A folder's archive lists its folders before what they hold, and
    /// every file's bytes.
    #[test]
    fn a_folder_archives_whole() {
        let dir = std::env::temp_dir().join(format!("dmavm-archive-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("boot-test/matrix")).unwrap();
        std::fs::create_dir_all(dir.join("scenarios")).unwrap();
        std::fs::write(dir.join("boot-test/kernel"), b"KERNEL").unwrap();
        std::fs::write(dir.join("boot-test/matrix/0-m.toml"), b"[machine.a]\n").unwrap();
        std::fs::write(dir.join("scenarios/boot-test.sh"), b"#!/bin/sh\n").unwrap();
        let a = archive_dir(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(a.len() % 4, 0);
        let text = String::from_utf8_lossy(&a);
        let order: Vec<usize> = [
            "boot-test\0",
            "boot-test/kernel\0",
            "boot-test/matrix\0",
            "boot-test/matrix/0-m.toml\0",
            "scenarios\0",
            "scenarios/boot-test.sh\0",
            "TRAILER!!!\0",
        ]
        .iter()
        .map(|n| text.find(n).unwrap_or_else(|| panic!("{n}")))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert!(text.contains("KERNEL") && text.contains("[machine.a]"));
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
            stdin.write_all(&a).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "boot-test\nboot-test/kernel\nboot-test/matrix\nboot-test/matrix/0-m.toml\nscenarios\nscenarios/boot-test.sh\n"
        );
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
            "checks\nchecks/boot-test.sh\nchecks/dmar-structures.sh\nchecks/net-exchange.sh\netc\netc/boot-test\netc/boot-test/patterns\n"
        );
    }
}
