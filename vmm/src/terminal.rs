//! Raw mode for the controlling terminal while a guest owns the console:
//! no line editing, no echo, and Ctrl-C goes to the guest rather than
//! killing dmavm (output post-processing stays on, so `\n` still starts a
//! new line for dmavm's own messages).
//!
//! The guard restores canonical mode when dropped; `main` keeps it alive for
//! the VM's lifetime and drops it before the process exits on every path
//! (normal exit, error, guest crash, termination signal). `panic = "abort"`
//! in release builds means a panic skips it, which is why the VMM avoids
//! panics on anything the guest or user controls.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use vmm_sys_util::terminal::Terminal;

/// stdin is in raw mode: what a fatal signal handler must undo.
static RAW: AtomicBool = AtomicBool::new(false);

/// Restores the terminal when dropped.
#[derive(Debug)]
pub struct RawModeGuard {
    _private: (),
}

impl RawModeGuard {
    /// Puts stdin into raw mode if it is a terminal; `None` otherwise.
    pub fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        match stdin.lock().set_raw_mode() {
            Ok(()) => {
                RAW.store(true, Ordering::SeqCst);
                Some(Self { _private: () })
            }
            Err(e) => {
                log::warn!("cannot put the terminal into raw mode: {e}");
                None
            }
        }
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        if let Err(e) = std::io::stdin().lock().set_canon_mode() {
            log::warn!("cannot restore the terminal: {e}");
        }
        RAW.store(false, Ordering::SeqCst);
    }
}

/// Puts stdin back into canonical mode from a handler of a signal that
/// ends dmavm (where the guard's drop never runs): no locks, no
/// allocation, only tcgetattr and tcsetattr, which are async-signal-safe.
pub fn restore_in_signal_handler() {
    if !RAW.load(Ordering::SeqCst) {
        return;
    }
    // SAFETY: termios is plain data, filled by tcgetattr before use.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, writable termios; a failure leaves it unused.
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
        return;
    }
    // The flags raw mode clears (vmm-sys-util's `set_raw_mode`).
    t.c_lflag |= libc::ICANON | libc::ECHO | libc::ISIG;
    // SAFETY: `t` is an initialised termios.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) };
}
