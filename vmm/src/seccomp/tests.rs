// Test code: a failed set-up step should stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::{Command, Output};

use super::*;

/// The variable that tells [`filtered_child`] what to do.
const CHILD: &str = "DMAVM_SECCOMP_CHILD";

/// Runs this test binary again as a child that installs a filter and
/// makes calls ([`filtered_child`]); filters are per process (and stay on
/// their thread), so the test itself stays unfiltered.
fn child(scenario: &str) -> Output {
    let exe = std::env::current_exe().unwrap();
    Command::new(exe)
        .args(["--ignored", "--exact", "seccomp::tests::filtered_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, scenario)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Not a test: the child of the tests below (`--ignored` runs it).
#[test]
#[ignore = "run by the seccomp tests as their filtered child process"]
fn filtered_child() {
    let Ok(scenario) = std::env::var(CHILD) else { return };
    let (mode, thread, call) = scenario
        .split(',')
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .try_into()
        .map_or_else(|v: Vec<String>| panic!("bad scenario {v:?}"), |[m, t, c]: [String; 3]| (m, t, c));
    let mode = match mode.as_str() {
        "on" => Mode::On,
        "log" => Mode::Log,
        _ => panic!("bad mode {mode}"),
    };
    let thread = if thread == "vcpu" { Thread::Vcpu(3) } else { Thread::Main };
    // "unlinkat": a control socket's directory, the one place the main
    // thread may remove names.
    let socket_dir = (call == "unlinkat").then(|| {
        // SAFETY: a NUL-terminated path; open(2) returns a descriptor or -1.
        let fd = unsafe { libc::open(c"/tmp".as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        assert!(fd >= 0, "open /tmp: {}", std::io::Error::last_os_error());
        fd
    });
    let filters = Filters::build(mode, false, socket_dir).unwrap();
    filters.install(thread).unwrap();
    // A call the thread's filter allows, with arguments it accepts: it
    // returns (EBADF) rather than trap.
    let mut byte = 0u8;
    // SAFETY: an invalid descriptor makes the call fail; `byte` is a valid
    // one-byte buffer.
    let rc = unsafe {
        match thread {
            Thread::Vcpu(_) => libc::ioctl(-1, ioctls::KVM_RUN() as _, 0) as isize,
            Thread::Main => libc::read(-1, (&mut byte as *mut u8).cast(), 1),
        }
    };
    eprintln!("allowed call returned {rc}");
    // SAFETY: socket, execve and ioctl with these arguments touch no memory
    // of this process but the string constants given.
    let rc = unsafe {
        match call.as_str() {
            "socket" => libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) as libc::c_long,
            "execve" => {
                let path = c"/bin/true";
                libc::execve(path.as_ptr(), std::ptr::null(), std::ptr::null()) as libc::c_long
            }
            // Injecting terminal input: ioctl is allowed, this request is
            // not.
            "tiocsti" => libc::ioctl(-1, libc::TIOCSTI as _, 0) as libc::c_long,
            // Removing a name: allowed in the socket's directory (no such
            // file there: ENOENT), forbidden anywhere else.
            "unlinkat" => {
                let name = c"dmavm-seccomp-test-no-such-file";
                let dir = socket_dir.expect("the socket's directory");
                let rc = libc::unlinkat(dir, name.as_ptr(), 0);
                eprintln!("unlinkat in the socket's directory returned {rc}");
                libc::unlinkat(libc::AT_FDCWD, name.as_ptr(), 0) as libc::c_long
            }
            _ => panic!("bad call {call}"),
        }
    };
    eprintln!("forbidden call returned {rc}: the thread survived");
}

fn assert_stopped(out: &Output, thread: &str, call: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(128 + libc::SIGSYS), "child: {out:?}");
    assert!(err.contains("allowed call returned -1"), "the allowed call did not return: {err}");
    assert!(!err.contains("survived"), "{err}");
    let line =
        err.lines().find(|l| l.starts_with("dmavm: error: seccomp:")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains(&format!("the {thread} thread")), "{line}");
    assert!(line.contains(call), "{line}");
}

#[test]
fn vcpu_thread_opening_a_socket_is_stopped_with_one_line() {
    let out = child("on,vcpu,socket");
    assert_stopped(&out, "vCPU 3", &format!("socket ({})", libc::SYS_socket));
}

/// With a control socket, the main thread may remove its file at the end:
/// names in that socket's directory, nowhere else.
#[test]
fn main_thread_removes_names_only_in_the_control_socket_directory() {
    let out = child("on,main,unlinkat");
    let err = stderr(&out);
    assert!(err.contains("unlinkat in the socket's directory returned -1"), "{err}");
    assert_stopped(&out, "main (event loop)", &format!("unlinkat ({})", libc::SYS_unlinkat));
}

#[test]
fn main_thread_starting_a_program_is_stopped() {
    let out = child("on,main,execve");
    assert_stopped(&out, "main (event loop)", &format!("execve ({})", libc::SYS_execve));
}

#[test]
fn ioctl_requests_outside_the_list_are_stopped() {
    for thread in ["vcpu", "main"] {
        let out = child(&format!("on,{thread},tiocsti"));
        assert_eq!(out.status.code(), Some(128 + libc::SIGSYS), "{thread}: {}", stderr(&out));
        assert!(stderr(&out).contains(&format!("ioctl ({})", libc::SYS_ioctl)), "{}", stderr(&out));
    }
}

#[test]
fn log_mode_lets_forbidden_calls_run() {
    for thread in ["vcpu", "main"] {
        let out = child(&format!("log,{thread},socket"));
        assert!(out.status.success(), "{thread}: {out:?}");
        let err = stderr(&out);
        assert!(err.contains("forbidden call returned") && err.contains("survived"), "{err}");
        assert!(!err.contains("dmavm: error"), "{err}");
    }
}

#[test]
fn off_mode_installs_nothing() {
    let filters = Filters::build(Mode::Off, true, None).unwrap();
    assert!(filters.vcpu.is_empty() && filters.main.is_empty());
}

/// What no thread may do at all, whatever else the lists grow to hold.
#[test]
fn no_thread_may_open_files_sockets_or_programs() {
    let forbidden = [
        libc::SYS_openat,
        libc::SYS_socket,
        libc::SYS_connect,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_clone,
        libc::SYS_clone3,
        libc::SYS_ptrace,
        libc::SYS_mount,
        libc::SYS_memfd_create,
        libc::SYS_process_vm_writev,
        libc::SYS_kill,
    ];
    for (name, list) in
        [("vCPU", vcpu::list_for_tests().unwrap()), ("main", main_thread::list_for_tests(false).unwrap())]
    {
        for nr in forbidden {
            assert!(!list.contains(nr), "{name} allows {}", names::name(nr).unwrap_or("?"));
        }
    }
    // The vCPU threads touch no files: they neither read nor wait.
    let vcpu = vcpu::list_for_tests().unwrap();
    for nr in [libc::SYS_read, libc::SYS_preadv, libc::SYS_pwritev, libc::SYS_epoll_pwait, libc::SYS_tgkill] {
        assert!(!vcpu.contains(nr), "vCPU allows {}", names::name(nr).unwrap_or("?"));
    }
}

/// A machine that takes devices at run time opens their disk images on
/// the main thread; it still starts no program, makes no socket and
/// reaches no other process, and only such a machine may open files.
#[test]
fn only_a_hotplug_machine_opens_files_and_still_nothing_else() {
    let hotplug = main_thread::list_for_tests(true).unwrap();
    assert!(hotplug.contains(libc::SYS_openat) && hotplug.contains(libc::SYS_eventfd2));
    for nr in [libc::SYS_socket, libc::SYS_connect, libc::SYS_execve, libc::SYS_clone3, libc::SYS_kill] {
        assert!(!hotplug.contains(nr), "hot-plug allows {}", names::name(nr).unwrap_or("?"));
    }
    assert!(!main_thread::list_for_tests(false).unwrap().contains(libc::SYS_openat));
}
