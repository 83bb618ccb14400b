//! Reporting a forbidden system call: with `--seccomp on` a filter answers
//! one with SIGSYS, whose handler prints one line naming the call and the
//! thread, puts the terminal back into canonical mode and ends dmavm with
//! status 128 + SIGSYS. It runs on the thread that made the call, under
//! that thread's filter, so it makes no call the filters do not allow
//! (`write`, the terminal ioctls on stdin, `exit_group`) and allocates
//! nothing.

use std::cell::Cell;
use std::fmt::Write as _;

use anyhow::{Context, Result};

use super::Thread;

thread_local! {
    /// The filter this thread installed, for the report.
    static FILTERED: Cell<Option<Thread>> = const { Cell::new(None) };
}

/// Records which filter the calling thread is about to install.
pub fn name_this_thread(thread: Thread) {
    FILTERED.with(|t| t.set(Some(thread)));
}

/// `si_code` of a SIGSYS raised by a seccomp filter (`SYS_SECCOMP`).
const SYS_SECCOMP: libc::c_int = 1;

/// Byte offset of `si_syscall` in `siginfo_t` on 64-bit Linux: after
/// `si_signo`, `si_errno`, `si_code` and padding (16 bytes) comes the
/// `_sigsys` member, `{ void *_call_addr; int _syscall; unsigned _arch; }`
/// (include/uapi/asm-generic/siginfo.h).
const SI_SYSCALL_OFFSET: usize = 24;

/// The exit status after a violation, as after a SIGSYS.
const STATUS: libc::c_int = 128 + libc::SIGSYS;

/// Installs the SIGSYS handler for the whole process.
pub fn install_handler() -> Result<()> {
    // SAFETY: sigaction is plain data; zeroed is a valid empty value that
    // the fields below complete.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_sigsys;
    action.sa_sigaction = handler as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `action.sa_mask` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is initialised and its handler has the signature
    // SA_SIGINFO asks for; the old action is not requested.
    let rc = unsafe { libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot install the SIGSYS handler");
    }
    Ok(())
}

/// A line built on the stack.
struct Line {
    bytes: [u8; 320],
    len: usize,
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.bytes.len() - self.len;
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(std::fmt::Error)
        } else {
            Ok(())
        }
    }
}

extern "C" fn on_sigsys(_signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t with SA_SIGINFO.
    let code = unsafe { (*info).si_code };
    // SAFETY: as above; a seccomp SIGSYS fills `_sigsys`, whose
    // `_syscall` sits at this offset, inside the 128-byte siginfo_t.
    let nr = unsafe { info.cast::<u8>().add(SI_SYSCALL_OFFSET).cast::<libc::c_int>().read_unaligned() };
    let mut line = Line { bytes: [0; 320], len: 0 };
    let thread = FILTERED.with(Cell::get);
    // A line cut at the buffer's end still says what matters.
    let _ = match (code, thread) {
        (SYS_SECCOMP, Some(thread)) => {
            let _ = write!(line, "dmavm: error: seccomp: the {thread} thread made the system call ");
            match super::names::name(libc::c_long::from(nr)) {
                Some(name) => write!(line, "{name} ({nr})"),
                None => write!(line, "number {nr}"),
            }
            .and_then(|()| {
                write!(
                    line,
                    ", which its filter forbids; dmavm stops (--seccomp log lets it run and logs it)"
                )
            })
        }
        _ => write!(line, "dmavm: error: SIGSYS (system call {nr}); dmavm stops"),
    };
    if line.len == line.bytes.len() {
        line.bytes[line.len - 1] = b'\n';
    } else {
        line.bytes[line.len] = b'\n';
        line.len += 1;
    }
    // SAFETY: `line.bytes[..line.len]` is initialised memory; write(2) is
    // async-signal-safe.
    unsafe { libc::write(libc::STDERR_FILENO, line.bytes.as_ptr().cast(), line.len) };
    crate::terminal::restore_in_signal_handler();
    // SAFETY: _exit is async-signal-safe and ends the process here, as a
    // SIGSYS would, without running destructors on a subverted thread.
    unsafe { libc::_exit(STATUS) };
}
