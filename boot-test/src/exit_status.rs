//! The exit statuses of `dmavm boot-test`: a verdict on the matrix, not on
//! one VM, so a set of their own (`dmavm run`'s are in the binary's
//! `exit_status`). They follow `git bisect run`: 0 the kernel is good, 1
//! it is bad, 125 it could not be tested (skip this commit). `--help`
//! lists them (args.rs); a test keeps the two in step.

/// Every run passed.
pub const PASSED: u8 = 0;
/// Some run failed.
pub const FAILED: u8 = 1;
/// Bad matrix or options: the command line, not the kernel, is wrong.
pub const BAD_INPUT: u8 = 2;
/// The harness could not test the kernel at all: the kernel file is
/// missing or unreadable, it has none of the virtio drivers the matrix
/// needs, the test bed or the initramfs could not be made, or no run could
/// start. `git bisect run` skips a commit with this status.
pub const UNTESTED: u8 = 125;

/// The status after a termination signal stopped the harness: 128 + the
/// signal, as a shell reports a process that signal killed (255 for
/// numbers no signal has). `git bisect run` stops bisecting on it.
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
            format!("{UNTESTED} the kernel could not be tested"),
            format!("{} after Ctrl-C", after_signal(libc::SIGINT)),
        ] {
            assert!(help.contains(&phrase), "{phrase}");
        }
        assert_eq!(after_signal(libc::SIGTERM), 143);
        assert_eq!(after_signal(-1), 255);
    }
}
