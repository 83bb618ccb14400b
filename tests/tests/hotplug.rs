//! PCI hot-plug of a real Linux guest under real KVM, through the control
//! socket, every thread under its seccomp filter: a disk plugged into an
//! empty translated `hotplug=on` bridge lands in an iommu group with
//! VIRTIO_F_ACCESS_PLATFORM, one plugged into an empty bypassed bridge in
//! none; the guest reads both whole with the host's checksums; both
//! removed, the guest's devices disappear; a second round the same, with
//! the translated disk's endpoint starting clean; a console plugged into
//! the translated bridge takes dmavm's terminal from the UART (a line each
//! way through hvc0) and gives it back when it leaves (a line through
//! ttyS0); then `shutdown` presses the ACPI power button and the guest
//! powers off.

// A missing DMAVM value is a test failure with the whole scenario report.
#![allow(clippy::panic)]

mod common;

use common::{number, value};

const ALL: &[&str] = &["hotplug"];

#[test]
fn devices_plugged_in_and_out_keep_the_iommu_scope_the_firmware_declared() {
    let r = common::scenario(ALL, "hotplug").unwrap_or_else(|e| panic!("{e}"));
    assert!(r.dmavm_value("error").is_none(), "{r}");
    for round in 1..=2 {
        for disk in ["t", "b"] {
            let key = |k: &str| format!("r{round}_{disk}_{k}");
            assert_eq!(value(&r, &key("add_status")), "0", "{r}");
            assert_eq!(value(&r, &key("sha_ok")), "1", "the guest read the host's data: {r}");
            assert_eq!(value(&r, &key("remove_status")), "0", "{r}");
            assert_eq!(value(&r, &key("gone")), "1", "the guest's device disappeared: {r}");
        }
        let key = |disk: &str, k: &str| format!("r{round}_{disk}_{k}");
        // The translated bridge's disk: in a group, ACCESS_PLATFORM
        // negotiated, on segment 1 (hpt).
        assert_eq!(value(&r, &key("t", "add_translated")), "true", "{r}");
        assert_ne!(value(&r, &key("t", "group")), "none", "{r}");
        assert_eq!(value(&r, &key("t", "platform")), "1", "{r}");
        assert!(value(&r, &key("t", "pci")).starts_with("0001:00:"), "{r}");
        // The bypassed bridge's disk: no group, guest-physical addresses.
        assert_eq!(value(&r, &key("b", "add_translated")), "false", "{r}");
        assert_eq!(value(&r, &key("b", "group")), "none", "{r}");
        assert_eq!(value(&r, &key("b", "platform")), "0", "{r}");
        assert!(value(&r, &key("b", "pci")).starts_with("0002:00:"), "{r}");
        assert_eq!(number(&r, &format!("r{round}_stats_devices")), 0, "nothing left in stats: {r}");
    }
    // The endpoint of a removed disk starts clean: right after the second
    // add (before the guest read it whole, which takes seconds) its counter
    // is below what the first round's whole read left in it.
    let first = number(&r, "r1_t_translations");
    assert!(first > 0 && number(&r, "r2_t_translations") > 0, "{r}");
    let at_add = number(&r, "r2_t_translations_at_add");
    assert!(
        at_add < first,
        "the counter restarted: {at_add} at the second add, {first} after the first read: {r}"
    );
    // The console: translated like the bridge's disks, the terminal's
    // line reaches it, and after it left, the UART.
    assert_eq!(value(&r, "hvc_add_status"), "0", "{r}");
    assert_eq!(value(&r, "hvc_add_translated"), "true", "{r}");
    assert_ne!(value(&r, "hvc_group"), "none", "{r}");
    assert_eq!(value(&r, "hvc_platform"), "1", "{r}");
    assert!(value(&r, "hvc_pci").starts_with("0001:00:"), "{r}");
    assert_eq!(number(&r, "hvc_host_saw_guest"), 1, "the guest's hvc0 line on dmavm's stdout: {r}");
    assert_eq!(value(&r, "hvc_read"), "typed-into-hvc", "{r}");
    assert_eq!(value(&r, "hvc_remove_status"), "0", "{r}");
    assert_eq!(value(&r, "hvc_gone"), "1", "{r}");
    assert_eq!(value(&r, "uart_read"), "typed-into-uart", "the UART has the terminal again: {r}");
    assert_eq!(number(&r, "dmesg_bad"), 0, "{r}");
    assert_eq!(value(&r, "remove_unknown_status"), "1", "{r}");
    assert!(value(&r, "remove_unknown").starts_with("dmavm:_error:_[placement]"), "{r}");
    assert_eq!(value(&r, "shutdown_status"), "0", "{r}");
    assert_eq!(number(&r, "power_button_seen"), 1, "the guest saw the button: {r}");
    assert_eq!(value(&r, "vmm_status"), "0", "the guest powered off: {r}");
    assert!(!r.output.iter().any(|l| l.contains("seccomp")), "{r}");
}
