//! The exit statuses of `dmavm boot-test`: a verdict on the matrix, not on
//! one VM, so a set of their own (`dmavm run`'s are in the binary's
//! `exit_status`). `--help` lists them (args.rs); a test keeps the two in
//! step.

/// Every run passed.
pub const PASSED: u8 = 0;
/// Some run did not, or the harness could not run them.
pub const FAILED: u8 = 1;
/// Bad matrix, missing kernel, bad options.
pub const BAD_INPUT: u8 = 2;

/// The status after a termination signal stopped the harness: 128 + the
/// signal, as a shell reports a process that signal killed (255 for
/// numbers no signal has).
pub fn after_signal(signal: i32) -> u8 {
    u8::try_from(signal).ok().and_then(|s| 128u8.checked_add(s)).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_names_every_status() {
        let help = super::super::args::AFTER_HELP;
        for phrase in [
            format!("{PASSED} every run passed"),
            format!("{FAILED} some run failed"),
            format!("{BAD_INPUT} bad matrix"),
            format!("{} after Ctrl-C", after_signal(libc::SIGINT)),
        ] {
            assert!(help.contains(&phrase), "{phrase}");
        }
        assert_eq!(after_signal(libc::SIGTERM), 143);
        assert_eq!(after_signal(-1), 255);
    }
}
