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

use vmm_sys_util::terminal::Terminal;

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
            Ok(()) => Some(Self { _private: () }),
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
    }
}
