//! Reading scenario results out of the sandbox's serial log.
//!
//! The sandbox's init (`resources/testbed/l1-init`) frames each scenario:
//! ```text
//! @@DMAVM-SCENARIO-BEGIN name
//! ...output...
//! @@DMAVM-SCENARIO-END name status=N secs=S
//! ```
//! and reports itself with `@@DMAVM-SANDBOX-READY ...`,
//! `@@DMAVM-SANDBOX-ERROR reason` and `@@DMAVM-SANDBOX-DONE ...`.
//! Markers are found anywhere in a line, as kernel messages may share it.

/// Start of a scenario's output.
pub const BEGIN: &str = "@@DMAVM-SCENARIO-BEGIN ";
/// End of a scenario's output, with its status and duration.
pub const END: &str = "@@DMAVM-SCENARIO-END ";
/// The sandbox loaded KVM and is about to run scenarios.
pub const READY: &str = "@@DMAVM-SANDBOX-READY";
/// The sandbox hit trouble outside any scenario.
pub const ERROR: &str = "@@DMAVM-SANDBOX-ERROR";
/// The sandbox ran all scenarios and is powering off.
pub const DONE: &str = "@@DMAVM-SANDBOX-DONE";

/// One scenario's frame as found in the log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    /// The scenario name.
    pub name: String,
    /// The lines between BEGIN and END (or the end of the log).
    pub output: Vec<String>,
    /// Status and seconds from the END line; `None` if it never came.
    pub end: Option<(i32, f64)>,
}

/// The text after `marker` in `line`, if the marker is in it.
pub(crate) fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

/// All frames in the log, in order.
pub(crate) fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut open: Option<Frame> = None;
    for line in lines {
        if let Some(rest) = after(line, BEGIN) {
            frames.extend(open.take());
            open = Some(Frame { name: rest.trim().to_string(), output: Vec::new(), end: None });
        } else if let Some(rest) = after(line, END) {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or_default();
            let mut status = None;
            let mut secs = 0.0;
            for w in words {
                match w.split_once('=') {
                    Some(("status", v)) => status = v.parse().ok(),
                    Some(("secs", v)) => secs = v.parse().unwrap_or(0.0),
                    _ => {}
                }
            }
            match open.take() {
                Some(mut f) if f.name == name => {
                    f.end = Some((status.unwrap_or(crate::scenario::STATUS_UNFINISHED), secs));
                    frames.push(f);
                }
                other => frames.extend(other),
            }
        } else if let Some(f) = open.as_mut() {
            f.output.push(line.to_string());
        }
    }
    frames.extend(open);
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_in_order_with_unfinished_last() {
        let log = "\
[    1.0] boot noise
@@DMAVM-SANDBOX-READY init=2.7 kvm=1
@@DMAVM-SCENARIO-BEGIN a
DMAVM ok=1
@@DMAVM-SCENARIO-END a status=0 secs=0.06
between
@@DMAVM-SCENARIO-BEGIN b
line 1
@@DMAVM-SCENARIO-END b status=3 secs=1.50
@@DMAVM-SCENARIO-BEGIN c
partial";
        let f = parse(log.lines());
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].name, "a");
        assert_eq!(f[0].output, vec!["DMAVM ok=1"]);
        assert_eq!(f[0].end, Some((0, 0.06)));
        assert_eq!(f[1].end, Some((3, 1.5)));
        assert_eq!(f[1].output, vec!["line 1"]);
        assert_eq!(f[2].name, "c");
        assert_eq!(f[2].end, None);
        assert_eq!(f[2].output, vec!["partial"]);
    }

    #[test]
    fn marker_after_kernel_noise_on_same_line() {
        let log = "x@@DMAVM-SCENARIO-BEGIN a\n[ 3.1] kvm: msg@@DMAVM-SCENARIO-END a status=0 secs=1";
        let f = parse(log.lines());
        assert_eq!(f[0].end, Some((0, 1.0)));
    }
}
