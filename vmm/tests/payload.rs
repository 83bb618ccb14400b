//! Plumbing tests with hand-written payloads on this host's /dev/kvm (PVM
//! included): COM1 output, the exit port, triple faults, several vCPUs and
//! their local APICs, unhandled MMIO, signals.
//!
//! These need a usable /dev/kvm. Without one they fail, saying so: a
//! missing KVM must never make the suite look green.

// Test code: a failed set-up step should stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DMAVM: &str = env!("CARGO_BIN_EXE_dmavm");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the payloads once per test binary.
fn payload(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("payloads");
        let status = Command::new(repo().join("resources/payloads/build.sh"))
            .arg(&dir)
            .status()
            .expect("running resources/payloads/build.sh");
        assert!(status.success(), "building the payloads failed (binutils installed? resources/setup.sh)");
        dir
    });
    dir.join(format!("{name}.bin"))
}

fn require_kvm() {
    let usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    assert!(usable, "payload tests need a usable /dev/kvm on this host (it is missing or not accessible)");
}

fn dmavm(args: &[&str]) -> Output {
    Command::new(DMAVM).args(args).stdin(Stdio::null()).output().expect("starting dmavm")
}

fn run_payload(name: &str, extra: &[&str]) -> Output {
    require_kvm();
    let p = payload(name);
    let mut args = vec!["run", "--payload", p.to_str().expect("utf-8 path"), "--memory", "64M"];
    args.extend_from_slice(extra);
    dmavm(&args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn hello_prints_on_com1_and_exits_with_its_status() {
    let out = run_payload("hello", &[]);
    assert_eq!(text(&out.stdout), "hello from dmavm\n", "stderr: {}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn triple_fault_is_reported_and_fails() {
    let out = run_payload("triple-fault", &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("dmavm: error: vCPU 0: the guest triple-faulted"), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected, got: {err}");
}

#[test]
fn every_vcpu_runs_and_sees_its_own_apic_id() {
    for cpus in [2u32, 4] {
        let out = run_payload("apic-id", &["--cpus", &cpus.to_string()]);
        let expected: String = (0..cpus).map(|i| format!("cpu {i} apic {i}\n")).collect();
        assert_eq!(text(&out.stdout), expected, "stderr: {}", text(&out.stderr));
        assert_eq!(out.status.code(), Some(0));
    }
}

#[test]
fn unmapped_mmio_is_reported_not_fatal() {
    let out = run_payload("mmio-unmapped", &[]);
    let err = text(&out.stderr);
    assert_eq!(text(&out.stdout), "mmio survived value=ffffffff\n", "stderr: {err}");
    assert_eq!(out.status.code(), Some(0));
    assert!(err.contains("unhandled MMIO write of 4 bytes at 0xd0000000"), "stderr: {err}");
    assert!(err.contains("unhandled MMIO read of 4 bytes at 0xd0000000"), "stderr: {err}");
}

#[test]
fn console_input_reaches_the_guest() {
    use std::io::Write;
    require_kvm();
    let p = payload("echo");
    let mut child = Command::new(DMAVM)
        .args(["run", "--payload", p.to_str().expect("utf-8 path"), "--memory", "64M"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting dmavm");
    // More than the 64-byte receive FIFO, so flow control must hold input
    // back until the guest drains it rather than drop it.
    let input: String = (0..200).map(|i| char::from(b'0' + (i % 10) as u8)).chain(['q']).collect();
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("writing stdin");
    let out = child.wait_with_output().expect("waiting for dmavm");
    assert_eq!(text(&out.stdout), input, "stderr: {}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn sigterm_stops_the_vm_with_status_143() {
    require_kvm();
    let p = payload("spin");
    let mut child = Command::new(DMAVM)
        .args(["run", "--payload", p.to_str().expect("utf-8 path"), "--memory", "64M", "--cpus", "2"])
        .stdin(Stdio::null())
        .spawn()
        .expect("starting dmavm");
    let _kill = KillOnPanic(child.id());
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().expect("waiting").is_none(), "the spinning guest stopped on its own");
    let pid = i32::try_from(child.id()).expect("pid fits in pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
    // own child, not yet reaped.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "dmavm did not stop within 5 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(143));
}

/// By default every thread runs under its seccomp filter, installed before
/// the guest runs, and the guest runs as without one.
#[test]
fn every_thread_is_filtered_by_default() {
    let out = run_payload("hello", &["--cpus", "2", "--log-level", "info"]);
    let err = text(&out.stderr);
    // Status 7 is the payload's own exit: both vCPUs ran it to the end
    // (their greetings interleave on the UART, so stdout is checked below,
    // on one vCPU).
    assert_eq!(out.status.code(), Some(7), "stderr: {err}");
    for thread in ["vCPU 0", "vCPU 1", "main (event loop)"] {
        let line = format!("dmavm: info: seccomp: {thread} thread filtered");
        assert!(err.contains(&line), "no '{line}' in: {err}");
    }
    let one = run_payload("hello", &["--log-level", "info"]);
    assert_eq!(one.status.code(), Some(7), "stderr: {}", text(&one.stderr));
    assert!(text(&one.stdout).contains("hello from dmavm"), "stdout: {}", text(&one.stdout));
    let off = run_payload("hello", &["--seccomp", "off", "--log-level", "info"]);
    assert_eq!(off.status.code(), Some(7), "stderr: {}", text(&off.stderr));
    assert!(!text(&off.stderr).contains("thread filtered"), "{}", text(&off.stderr));
}

/// One `dmavm: error:` line on stderr, non-zero status, no panic.
fn assert_one_error_line(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "stderr: {err}");
    assert!(out.status.code().is_some(), "killed by a signal: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected, got: {err}");
    assert!(err.starts_with("dmavm: error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_gets_one_clear_line() {
    let hello = payload("hello");
    let hello = hello.to_str().expect("utf-8 path");
    let dir = env!("CARGO_TARGET_TMPDIR");
    let not_kernel = Path::new(dir).join("not-a-kernel");
    std::fs::write(&not_kernel, b"#!/bin/sh\necho hi\n").expect("writing a file");
    let not_kernel = not_kernel.to_str().expect("utf-8 path");
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--payload", "/nonexistent/p.bin"], "cannot read the payload /nonexistent/p.bin"),
        (&["run", "--payload", dir], "is a directory: dmavm reads only regular files"),
        (&["run", "--kernel", "/nonexistent/vmlinuz"], "cannot read the kernel /nonexistent/vmlinuz"),
        (&["run", "--kernel", not_kernel], "neither a bzImage nor an ELF"),
        (&["run", "--payload", hello, "--memory", "4M"], "--memory 4 MiB is too small"),
        (&["run", "--payload", hello, "--memory", "64T"], "more than this host's"),
        (&["run", "--payload", hello, "--memory", "lots"], "'lots' is not a size"),
        (&["run", "--payload", hello, "--cpus", "0"], "at least 1 vCPU"),
        (
            &["run", "--payload", hello, "--cpus", "100000"],
            "--cpus 100000: the x86_64 machine has 1 to 254 vCPUs",
        ),
        (&["run", "--payload", hello, "--frobnicate"], "unexpected argument '--frobnicate'"),
        (&["run", "--payload", hello, "--kvm-device", "/nonexistent/kvm"], "cannot open /nonexistent/kvm"),
        (&["run"], "--kernel"),
        (
            &["run", "--payload", hello, "--disk", "path=/nonexistent/d.img"],
            "disk0: cannot open the disk image /nonexistent/d.img",
        ),
        (
            &["run", "--payload", hello, "--disk", &format!("path={dir}")],
            "is a directory: a disk image must be a regular file or a block device",
        ),
        (&["run", "--payload", hello, "--disk", "path=d.img,colour=red"], "unknown key 'colour'"),
        (
            &["run", "--payload", hello, "--disk", "path=d.img,transport=usb"],
            "transport=usb: expected mmio or pci",
        ),
        (&["run", "--payload", hello, "--rng", "transport=isa"], "transport=isa: expected mmio or pci"),
        (&["run", "--payload", hello, "--disk", "readonly=on"], "path=FILE is required"),
    ];
    for (args, needle) in cases {
        if args.contains(&"100000") || args.contains(&"--disk") {
            require_kvm();
        }
        assert_one_error_line(&dmavm(args), needle);
    }
}

/// The control socket on a running VM, every thread under its seccomp
/// filter: 1000 `stats` requests from clients one after another, error
/// replies that leave the VM running, pause and resume, a client that
/// leaves mid-request, and `quit`, which ends the VM with status 0.
#[test]
fn the_control_socket_serves_a_running_vm() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::os::unix::net::UnixStream;

    require_kvm();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("control-socket");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the test directory");
    let socket = dir.join("api.sock");
    let disk = dir.join("disk.img");
    std::fs::write(&disk, vec![0u8; 64 << 10]).expect("writing the disk image");
    let p = payload("spin");
    let disk_keys = format!("path={},transport=pci,bridge=hpt", disk.display());
    let mut child = Command::new(DMAVM)
        .args(["run", "--payload", p.to_str().expect("utf-8 path"), "--memory", "64M", "--cpus", "2"])
        .args(["--iommu", "--pci-bridge", "id=hpt,hotplug=on", "--disk", &disk_keys])
        .arg("--api-socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting dmavm");
    let _kill = KillOnPanic(child.id());
    let start = Instant::now();
    let connect = || loop {
        match UnixStream::connect(&socket) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
                return s;
            }
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(10), "the control socket never answered: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let ask = |line: &str| -> serde_json::Value {
        let mut s = connect();
        s.write_all(format!("{line}\n").as_bytes()).expect("sending a request");
        let mut reply = String::new();
        BufReader::new(&s).read_line(&mut reply).expect("reading a reply");
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply {reply:?}: {e}"))
    };
    let info = ask("{\"command\":\"info\"}");
    assert_eq!(info["ok"]["state"], "running", "{info}");
    // The machine as `describe --format json` shows it.
    let described = dmavm(&[
        "describe",
        "--format",
        "json",
        "--cpus",
        "2",
        "--memory",
        "64M",
        "--iommu",
        "--pci-bridge",
        "id=hpt,hotplug=on",
        "--disk",
        &disk_keys,
    ]);
    assert!(described.status.success(), "describe: {}", text(&described.stderr));
    let described: serde_json::Value =
        serde_json::from_slice(&described.stdout).expect("describe prints JSON");
    assert_eq!(info["ok"]["machine"], described);
    let meta = std::fs::symlink_metadata(&socket).expect("the socket file");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o777, 0o600);

    for i in 0..1000 {
        let stats = ask("{\"command\":\"stats\"}");
        let endpoints = stats["ok"]["endpoints"].as_array().unwrap_or_else(|| panic!("request {i}: {stats}"));
        assert_eq!(endpoints.len(), 1, "{stats}");
        assert_eq!(endpoints[0]["device"], "disk0", "{stats}");
    }
    assert_eq!(ask("{\"command\":")["error"]["code"], "malformed-request");
    assert_eq!(ask("{\"command\":\"launch\"}")["error"]["code"], "unknown-command");
    assert_eq!(ask("{\"command\":\"remove-device\",\"id\":\"nope\"}")["error"]["code"], "placement");
    let bypass = serde_json::json!({
        "command": "add-device", "type": "disk",
        "options": format!("{disk_keys},id=extra,direct-ram-access=on"),
    });
    let refused = ask(&bypass.to_string());
    assert_eq!(refused["error"]["code"], "check-failed", "{refused}");
    {
        let mut half = connect();
        half.write_all(b"{\"command\":\"qu").expect("sending half a request");
    }
    assert_eq!(ask("{\"command\":\"pause\"}")["ok"]["state"], "paused");
    assert_eq!(ask("{\"command\":\"info\"}")["ok"]["state"], "paused");
    assert_eq!(ask("{\"command\":\"resume\"}")["ok"]["state"], "running");
    assert!(child.try_wait().expect("waiting").is_none(), "the VM stopped before quit");

    // The client binary.
    let ctl = Command::new(DMAVM)
        .args(["ctl", "--socket"])
        .arg(&socket)
        .arg("stats")
        .output()
        .expect("running dmavm ctl");
    assert!(ctl.status.success(), "dmavm ctl stats: {}", text(&ctl.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&ctl.stdout).expect("ctl prints JSON");
    assert_eq!(stats["iommu"], true);
    let ctl = Command::new(DMAVM).args(["ctl", "--socket"]).arg(&socket).arg("resume").output().expect("ctl");
    assert_eq!(ctl.status.code(), Some(1));
    assert_eq!(text(&ctl.stderr), "dmavm: error: [invalid-state] the VM is running, not paused\n");
    // Repeated on one connection: every reply printed; the first error
    // reply ends the run, with status 1.
    let ctl = Command::new(DMAVM)
        .args(["ctl", "--count", "50", "--socket"])
        .arg(&socket)
        .arg("stats")
        .output()
        .expect("ctl");
    assert!(ctl.status.success(), "dmavm ctl --count 50 stats: {}", text(&ctl.stderr));
    assert_eq!(text(&ctl.stdout).matches("\"iommu\": true").count(), 50);
    let ctl = Command::new(DMAVM)
        .args(["ctl", "--count", "3", "--interval", "0.01", "--socket"])
        .arg(&socket)
        .arg("resume")
        .output()
        .expect("ctl");
    assert_eq!(ctl.status.code(), Some(1));
    assert_eq!(text(&ctl.stderr).lines().count(), 1, "one error, then it stopped: {}", text(&ctl.stderr));

    let quit = Command::new(DMAVM).args(["ctl", "--socket"]).arg(&socket).arg("quit").output().expect("ctl");
    assert!(quit.status.success(), "dmavm ctl quit: {}", text(&quit.stderr));
    let out = child.wait_with_output().expect("waiting for dmavm");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("seccomp"), "stderr: {}", text(&out.stderr));
    assert!(!socket.exists(), "the VM's end removes its socket file");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kills a spinning VM when its test fails before ending it: a failed
/// assertion must not leave a guest burning a CPU after the test run.
struct KillOnPanic(u32);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(pid) = i32::try_from(self.0) {
                // SAFETY: kill(2) has no memory-safety preconditions; the
                // pid is this test's child, not yet reaped while the child
                // handle is alive.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}
