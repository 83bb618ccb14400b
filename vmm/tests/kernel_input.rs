//! Bad kernel inputs: each gives one clear error line and a non-zero exit,
//! with synthetic images so no real kernel is needed. They run on this
//! host's /dev/kvm (the checks happen while the VM is assembled, before any
//! guest code runs).

// Test code: a failed set-up step should stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const DMAVM: &str = env!("CARGO_BIN_EXE_dmavm");

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&p, bytes).expect("writing a test file");
    p
}

fn put(image: &mut [u8], offset: usize, bytes: &[u8]) {
    image[offset..offset + bytes.len()].copy_from_slice(bytes);
}

/// A bzImage header (boot.rst, "THE REAL-MODE KERNEL HEADER") in front of
/// 4 KiB of protected-mode code: enough for the loader, never run.
fn synthetic_bzimage(cmdline_size: u32) -> Vec<u8> {
    let mut image = vec![0u8; 1024 + 4096];
    image[0x1f1] = 1; // setup_sects: the setup code is 1 + 1 sectors
    put(&mut image, 0x1fe, &0xaa55u16.to_le_bytes());
    put(&mut image, 0x202, b"HdrS");
    put(&mut image, 0x206, &0x020fu16.to_le_bytes()); // protocol 2.15
    image[0x211] = 0x01; // loadflags: LOADED_HIGH
    put(&mut image, 0x214, &0x10_0000u32.to_le_bytes()); // code32_start
    put(&mut image, 0x22c, &0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
    put(&mut image, 0x236, &1u16.to_le_bytes()); // xloadflags: XLF_KERNEL_64
    put(&mut image, 0x238, &cmdline_size.to_le_bytes());
    put(&mut image, 0x260, &0x10_0000u32.to_le_bytes()); // init_size
    image
}

/// An ELF64 executable with one PT_LOAD segment and no PVH note.
fn synthetic_elf_without_pvh() -> Vec<u8> {
    let mut image = vec![0u8; 0x1000 + 16];
    put(&mut image, 0, b"\x7fELF\x02\x01\x01");
    put(&mut image, 16, &2u16.to_le_bytes()); // e_type EXEC
    put(&mut image, 18, &62u16.to_le_bytes()); // e_machine x86-64
    put(&mut image, 20, &1u32.to_le_bytes()); // e_version
    put(&mut image, 24, &0x100_000u64.to_le_bytes()); // e_entry
    put(&mut image, 32, &64u64.to_le_bytes()); // e_phoff
    put(&mut image, 52, &64u16.to_le_bytes()); // e_ehsize
    put(&mut image, 54, &56u16.to_le_bytes()); // e_phentsize
    put(&mut image, 56, &1u16.to_le_bytes()); // e_phnum
    let ph = 64;
    put(&mut image, ph, &1u32.to_le_bytes()); // PT_LOAD
    put(&mut image, ph + 4, &5u32.to_le_bytes()); // R+X
    put(&mut image, ph + 8, &0x1000u64.to_le_bytes()); // p_offset
    put(&mut image, ph + 16, &0x100_000u64.to_le_bytes()); // p_vaddr
    put(&mut image, ph + 24, &0x100_000u64.to_le_bytes()); // p_paddr
    put(&mut image, ph + 32, &16u64.to_le_bytes()); // p_filesz
    put(&mut image, ph + 40, &16u64.to_le_bytes()); // p_memsz
    put(&mut image, ph + 48, &0x1000u64.to_le_bytes()); // p_align
    image
}

fn dmavm(args: &[&str]) -> Output {
    assert!(
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok(),
        "these tests need a usable /dev/kvm on this host"
    );
    Command::new(DMAVM).args(args).stdin(Stdio::null()).output().expect("starting dmavm")
}

fn assert_one_error_line(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected, got: {err}");
    assert!(err.starts_with("dmavm: error: ") && err.contains(needle), "expected {needle:?} in: {err}");
}

#[test]
fn command_line_longer_than_the_kernel_accepts() {
    let kernel = tmp("bz-cmdline", &synthetic_bzimage(255));
    let long = "x".repeat(300);
    let out = dmavm(&["run", "--kernel", kernel.to_str().unwrap(), "--memory", "64M", "--cmdline", &long]);
    assert_one_error_line(&out, "the kernel command line is 300 bytes; this kernel accepts at most 255");
}

#[test]
fn initrd_that_does_not_fit() {
    let kernel = tmp("bz-initrd", &synthetic_bzimage(2047));
    let initrd = tmp("big-initrd", &vec![0u8; 20 << 20]);
    let out = dmavm(&[
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--memory",
        "16M",
    ]);
    assert_one_error_line(&out, "does not fit in guest memory");
}

/// A payload that cannot be what its header says: one error line, before
/// anything is loaded.
#[test]
fn bzimage_with_a_hostile_payload() {
    let mut outside = synthetic_bzimage(2047);
    put(&mut outside, 0x24c, &0x10_0000u32.to_le_bytes()); // payload_length past the file
    let kernel = tmp("bz-payload-outside", &outside);
    let out = dmavm(&["run", "--kernel", kernel.to_str().unwrap(), "--memory", "64M"]);
    assert_one_error_line(&out, "lie outside the 5120 bytes of the bzImage");

    // A gzip header, then garbage, and a size trailer.
    let mut corrupt = synthetic_bzimage(2047);
    put(&mut corrupt, 1024, &[0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03, 0xff, 0xff, 0xff, 0xff]);
    put(&mut corrupt, 1024 + 60, &4096u32.to_le_bytes());
    put(&mut corrupt, 0x24c, &64u32.to_le_bytes());
    let kernel = tmp("bz-payload-corrupt", &corrupt);
    let out = dmavm(&["run", "--kernel", kernel.to_str().unwrap(), "--memory", "64M"]);
    assert_one_error_line(&out, "is not a valid bzImage: its gzip payload is corrupt or truncated");
}

#[test]
fn elf_without_pvh_entry() {
    let kernel = tmp("no-pvh.elf", &synthetic_elf_without_pvh());
    let out = dmavm(&["run", "--kernel", kernel.to_str().unwrap(), "--memory", "64M"]);
    assert_one_error_line(&out, "has no PVH entry point");
}

#[test]
fn neither_bzimage_nor_elf() {
    let kernel = tmp("garbage-kernel", &[0x55u8; 4096]);
    let out = dmavm(&["run", "--kernel", kernel.to_str().unwrap(), "--memory", "64M"]);
    assert_one_error_line(&out, "is neither a bzImage nor an ELF vmlinux");
}

#[test]
fn missing_initrd() {
    let kernel = tmp("bz-noinitrd", &synthetic_bzimage(2047));
    let out = dmavm(&["run", "--kernel", kernel.to_str().unwrap(), "--initrd", "/nonexistent/initrd"]);
    assert_one_error_line(
        &out,
        "cannot read the initrd /nonexistent/initrd: No such file or directory (os error 2)",
    );
}
