//! The exit statuses of `dmavm run`, `describe` and `explain`, in one place
//! so that every command means the same by each. `dmavm boot-test` reports
//! a verdict on a matrix instead, with statuses of its own
//! (`dmavm_boot_test::exit_status`).
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success; for `run`, the guest powered off or a control-socket client sent `quit` |
//! | N | `run` on x86_64: the guest wrote N to the exit port (0xf4) |
//! | 1 ([`ERROR`]) | dmavm failed (bad input, KVM set-up, a vCPU or the guest crashed) |
//! | 2 ([`USAGE`]) | the command line could not be used (as clap reports it) |
//! | 3 ([`RESET`]) | `run`: the guest asked for a reset (reboot) |
//! | 128+S ([`signalled`]) | `run`: dmavm was stopped by signal S (SIGTERM: 143) |

/// Every failure but a usage error.
pub const ERROR: u8 = 1;
/// A command line that could not be used, the status clap uses.
pub const USAGE: u8 = 2;
/// The guest asked for a reset.
pub const RESET: u8 = 3;

/// The status for a stop by `signal`, as a shell reports a process killed
/// by it (255 for numbers no signal has).
pub fn signalled(signal: i32) -> u8 {
    u8::try_from(signal).ok().and_then(|s| 128u8.checked_add(s)).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_count_from_128() {
        assert_eq!(signalled(libc::SIGTERM), 143);
        assert_eq!(signalled(libc::SIGINT), 130);
        assert_eq!(signalled(-1), 255);
        assert_eq!(signalled(200), 255);
    }

    #[test]
    fn the_help_names_these_statuses() {
        use clap::CommandFactory;
        let help = crate::cli::Cli::command().render_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for phrase in [
            format!("{RESET} when the guest resets"),
            format!("{ERROR} when dmavm or the guest fails"),
            format!("{USAGE} for a command-line error"),
            "128+S after signal S".to_string(),
        ] {
            assert!(help.contains(&phrase), "{phrase}");
        }
    }
}
