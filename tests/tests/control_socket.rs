//! The control socket of a VM running a real Linux guest under real KVM,
//! every thread under its seccomp filter: 1000 `stats` requests in a row
//! on one connection and 100 more, each from its own `dmavm ctl`, while
//! the guest reads its disk through the virtio-iommu; the counters they
//! report grow with the guest's I/O. Then
//! an add-device the checks refuse, pause (the guest stops reading),
//! resume and quit (dmavm exits with 0).

// A missing DMAVM value is a test failure with the whole scenario report.
#![allow(clippy::panic)]

mod common;

use common::{number, value};

const ALL: &[&str] = &["control-socket"];

#[test]
fn control_socket_serves_a_linux_guest_doing_io() {
    let r = common::scenario(ALL, "control-socket").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 0, "{r}");
    assert_eq!(value(&r, "socket_mode"), "600", "{r}");
    assert_eq!(value(&r, "stats_sequence_status"), "0", "{r}");
    assert_eq!(number(&r, "stats_ok"), 1100, "{r}");
    assert_eq!(number(&r, "stats_rand_replies"), 1100, "every reply has the disk's endpoint: {r}");
    let (before, after) = (number(&r, "translations_before"), number(&r, "translations_after"));
    assert!(before > 0, "the guest's first pass went through the IOMMU: {r}");
    assert!(after > before, "the counters are live: {r}");
    assert!(
        number(&r, "passes_after") > number(&r, "passes_before"),
        "the guest kept reading while the requests ran: {r}"
    );
    assert_eq!(value(&r, "add_refused_status"), "1", "{r}");
    assert!(value(&r, "add_refused").starts_with("dmavm:_error:_[check-failed]_[DMA003]"), "{r}");
    assert_eq!(value(&r, "pause_status"), "0", "{r}");
    assert_eq!(number(&r, "passes_while_paused"), 0, "no guest progress while paused: {r}");
    assert_eq!(value(&r, "info_state"), "paused", "{r}");
    assert_eq!(value(&r, "resume_status"), "0", "{r}");
    assert_eq!(value(&r, "quit_status"), "0", "{r}");
    assert_eq!(value(&r, "vmm_status"), "0", "quit ends dmavm with 0: {r}");
    assert!(!r.output.iter().any(|l| l.contains("seccomp")), "{r}");
}
