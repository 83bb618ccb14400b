//! Hostile input on the command line and in files: each gets one clear
//! error line and a non-zero status, never a hang, a flood or a second VM
//! on a disk another one writes. Runs the binary (on this host's /dev/kvm
//! where a VM must start).

// Test code: a failed set-up step should stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DMAVM: &str = env!("CARGO_BIN_EXE_dmavm");

/// Builds the payloads once per test binary.
fn payload(name: &str) -> String {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostile-payloads");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../resources/payloads/build.sh");
        let status = Command::new(script).arg(&dir).status().expect("running resources/payloads/build.sh");
        assert!(status.success(), "building the payloads failed (binutils installed? resources/setup.sh)");
        dir
    });
    dir.join(format!("{name}.bin")).to_str().expect("utf-8 path").to_string()
}

fn require_kvm() {
    let usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    assert!(usable, "these tests need a usable /dev/kvm on this host (it is missing or not accessible)");
}

fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn image(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(1 << 20).unwrap();
    path.to_str().unwrap().to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs dmavm, killing it (and failing) if it has not ended in 20 s: a
/// hang is the bug some of these tests look for.
fn dmavm(args: &[&str]) -> Output {
    let mut child = Command::new(DMAVM)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting dmavm");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dmavm {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn assert_one_error_line(out: &Output, needle: &str) -> String {
    let err = text(&out.stderr);
    assert!(matches!(out.status.code(), Some(1) | Some(2)), "status {:?}: {err}", out.status);
    assert_eq!(err.lines().count(), 1, "one line expected, got: {err}");
    assert!(err.starts_with("dmavm: error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains('\u{1b}'), "a terminal control reached stderr: {err:?}");
    err
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Holds a `flock` on `path` from this process, as another VM would.
fn hold_lock(path: &str, exclusive: bool) -> std::fs::File {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let how = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
    // SAFETY: flock on an open descriptor.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), how | libc::LOCK_NB) }, 0);
    f
}

#[test]
fn a_disk_another_process_holds_is_refused() {
    require_kvm();
    let dir = work_dir("lock");
    let disk = image(&dir, "d.img");
    let hello = payload("hello");
    let writer = hold_lock(&disk, true);
    for opts in [format!("path={disk},id=data"), format!("path={disk},id=data,readonly=on")] {
        let out = dmavm(&["run", "--payload", &hello, "--memory", "64M", "--disk", &opts]);
        assert_one_error_line(
            &out,
            &format!("data: the disk image {disk} is in use: another process holds a lock"),
        );
    }
    drop(writer);
    // Readers share: a read-only disk next to another reader runs.
    let reader = hold_lock(&disk, false);
    let ro = format!("path={disk},readonly=on");
    let out = dmavm(&["run", "--payload", &hello, "--memory", "64M", "--disk", &ro]);
    assert_eq!(out.status.code(), Some(7), "stderr: {}", text(&out.stderr));
    let rw = format!("path={disk}");
    assert_one_error_line(
        &dmavm(&["run", "--payload", &hello, "--memory", "64M", "--disk", &rw]),
        "is in use",
    );
    drop(reader);
}

/// Kills the child when dropped, so that a failed assertion leaves no VM.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The descriptors of process `pid` that point at `file`.
fn fds_of(pid: u32, file: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            (target == Path::new(file)).then(|| e.file_name().to_str().unwrap().to_string())
        })
        .collect()
}

fn fdinfo_flags(pid: u32, fd: &str) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let line = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap();
    u32::from_str_radix(line.trim(), 8).unwrap()
}

#[test]
fn a_running_vm_holds_its_disks_and_keeps_its_privileges_and_descriptors_to_itself() {
    require_kvm();
    let dir = work_dir("running");
    let (rw, ro) = (image(&dir, "rw.img"), image(&dir, "ro.img"));
    let spin = payload("spin");
    let child = Command::new(DMAVM)
        .args(["run", "--payload", &spin, "--memory", "64M", "--disk", &format!("path={rw}")])
        .args(["--disk", &format!("path={ro},readonly=on")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting dmavm");
    let vm = Running(child);
    let pid = vm.0.id();
    // Running once its devices are built and its vCPU has started.
    let start = Instant::now();
    while !std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count() > 1).unwrap_or(false)
        || fds_of(pid, &ro).is_empty()
    {
        assert!(start.elapsed() < Duration::from_secs(20), "the VM did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));

    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])), "{status}");

    let ro_fd = fds_of(pid, &ro);
    assert_eq!(ro_fd.len(), 1);
    assert_eq!(fdinfo_flags(pid, &ro_fd[0]) & libc::O_ACCMODE as u32, libc::O_RDONLY as u32);
    let rw_fd = fds_of(pid, &rw);
    assert_eq!(fdinfo_flags(pid, &rw_fd[0]) & libc::O_ACCMODE as u32, libc::O_RDWR as u32);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let fd = entry.unwrap().file_name().to_str().unwrap().to_string();
        if fd.parse::<u32>().unwrap() <= 2 {
            continue;
        }
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap_or_default();
        let flags = fdinfo_flags(pid, &fd);
        assert_ne!(flags & libc::O_CLOEXEC as u32, 0, "fd {fd} ({}) is not close-on-exec", target.display());
    }

    // A second VM on either disk is refused while this one runs.
    let hello = payload("hello");
    for disk in [format!("path={rw},readonly=on"), format!("path={ro}")] {
        let out = dmavm(&["run", "--payload", &hello, "--memory", "64M", "--disk", &disk]);
        assert_one_error_line(&out, "is in use: another process holds a lock on it");
    }
    drop(vm);
}

#[test]
fn files_that_are_not_regular_files_are_refused_at_once() {
    require_kvm();
    let dir = work_dir("kinds");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap();
    let d = dir.to_str().unwrap();
    let hello = payload("hello");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--disk".into(), format!("path={d}")], "disk0: the disk image"),
        (vec!["--disk".into(), format!("path={d},readonly=on")], "is a directory"),
        (vec!["--disk".into(), format!("path={fifo}")], "is a FIFO (named pipe)"),
        (vec!["--disk".into(), "path=/dev/zero".into()], "is a character device"),
        (vec!["--config".into(), fifo.into()], "the config file"),
        (vec!["--config".into(), "/dev/zero".into()], "the config file /dev/zero is a character device"),
    ];
    for (extra, needle) in &cases {
        let mut args = vec!["run", "--payload", &hello, "--memory", "64M"];
        args.extend(extra.iter().map(String::as_str));
        assert_one_error_line(&dmavm(&args), needle);
    }
    for (option, what) in [("--payload", "payload"), ("--kernel", "kernel")] {
        for (path, kind) in [(fifo, "a FIFO"), ("/dev/zero", "a character device"), (d, "a directory")] {
            let out = dmavm(&["run", option, path, "--memory", "64M"]);
            assert_one_error_line(&out, &format!("the {what} {path} is {kind}"));
        }
    }
    let kernel = image(&dir, "k");
    let out = dmavm(&["run", "--kernel", &kernel, "--initrd", fifo, "--memory", "64M"]);
    assert_one_error_line(&out, "the initrd");
    let big = dir.join("big.bin");
    std::fs::File::create(&big).unwrap().set_len((64 << 20) + 1).unwrap();
    let out = dmavm(&["run", "--payload", big.to_str().unwrap(), "--memory", "256M"]);
    assert_one_error_line(&out, "more than the 64 MiB a payload may have");
    let out = dmavm(&["describe", "--config", fifo]);
    assert_one_error_line(&out, "is a FIFO");
}

#[test]
fn echoed_user_text_stays_on_one_short_line() {
    let dir = work_dir("echo");
    let long = "x".repeat(100_000);
    for args in [
        vec!["describe".to_string(), "--disk".into(), "path=a\nb,id=x\ny".into()],
        vec!["describe".to_string(), "--disk".into(), format!("path=a,id={long}")],
        vec!["describe".to_string(), "--disk".into(), format!("path=a,transport={long}")],
        vec!["run".to_string(), "--payload".into(), format!("/nonexistent/{long}")],
        vec!["run".to_string(), "--payload".into(), "/nonexistent/a\nb\u{1b}[2J".into()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = assert_one_error_line(&dmavm(&args), "");
        assert!(err.len() < 1000, "{} characters: {}", err.len(), &err[..200]);
    }
    let config = dir.join("m.toml");
    std::fs::write(&config, "[[disk]]\npath = \"a\"\nid = \"\\u001b]0;owned\\u0007\"\n").unwrap();
    let err = assert_one_error_line(&dmavm(&["describe", "--config", config.to_str().unwrap()]), "m.toml:3:");
    assert!(err.contains("\\u{1b}]0;owned\\u{7}"), "{err}");
}

#[test]
fn describe_refuses_what_run_refuses() {
    require_kvm();
    let hello = payload("hello");
    let long_id = format!("path=d.img,id={}", "a".repeat(21));
    let cases: &[(&[&str], &str)] = &[
        (&["--cpus", "255"], "--cpus 255: the x86_64 machine has 1 to 254 vCPUs"),
        (&["--cpus", "1000"], "--cpus 1000: the x86_64 machine has 1 to 254 vCPUs"),
        (&["--disk", &long_id], "virtio-blk serial, at most 20 characters"),
    ];
    for (extra, needle) in cases {
        let describe: Vec<&str> = ["describe"].iter().chain(extra.iter()).copied().collect();
        assert_one_error_line(&dmavm(&describe), needle);
        let run: Vec<&str> =
            ["run", "--payload", &hello, "--memory", "64M"].iter().chain(extra.iter()).copied().collect();
        assert_one_error_line(&dmavm(&run), needle);
    }
    let out = dmavm(&["describe", "--arch", "aarch64", "--cpus", "124"]);
    assert_one_error_line(&out, "--cpus 124: the aarch64 machine has 1 to 123 vCPUs");
}

#[test]
fn a_missing_disk_is_a_warning_for_describe_and_an_error_for_run_before_kvm() {
    let out = dmavm(&["describe", "--disk", "path=/nonexistent/a.img", "--disk", "path=/nonexistent/b.img"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.lines().all(|l| l.starts_with("dmavm: warn: cannot open the disk image /nonexistent/")),
        "{err}"
    );
    assert!(text(&out.stdout).contains("virtio-blk"));
    // No KVM device at all: the disk is what run names.
    let out = dmavm(&[
        "run",
        "--payload",
        &payload("hello"),
        "--kvm-device",
        "/nonexistent/kvm",
        "--disk",
        "path=/nonexistent/a.img,id=boot",
    ]);
    assert_one_error_line(&out, "boot: cannot open the disk image /nonexistent/a.img: No such file");
}

#[test]
fn messages_name_the_problem() {
    let hello = payload("hello");
    let out = dmavm(&["run", "--payload", &hello, "--memory", "64M", "--kvm-device", "/dev/null"]);
    assert_one_error_line(&out, "/dev/null is not a KVM device");
    let dir = work_dir("messages");
    let file = dir.join("f");
    std::fs::write(&file, "").unwrap();
    let out = dmavm(&["run", "--payload", &hello, "--memory", "64M", "--kvm-device", file.to_str().unwrap()]);
    assert_one_error_line(&out, "is not a KVM device");
    let config = dir.join("date.toml");
    std::fs::write(&config, "cpus = 1\nmemory = 2024-01-01\n").unwrap();
    let out = dmavm(&["describe", "--config", config.to_str().unwrap()]);
    let err = assert_one_error_line(&out, "date.toml:2: memory: dates are not valid here");
    assert!(!err.contains("toml_private"), "{err}");
}

#[cfg(feature = "boot-test")]
#[test]
fn boot_test_refuses_a_broken_fail_pattern_up_front() {
    let dir = work_dir("pattern");
    let matrix = dir.join("m.toml");
    std::fs::write(&matrix, "[machine.a]\n").unwrap();
    let kernel = image(&dir, "k");
    let out = dmavm(&[
        "boot-test",
        "--kernel",
        &kernel,
        "--matrix",
        matrix.to_str().unwrap(),
        "--fail-pattern",
        "([",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_one_error_line(&out, "'([' is not an extended regular expression (grep -E)");
}
