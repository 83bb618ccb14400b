//! The hot-plug controller of a hardware-reduced machine and its contract with the VMM's device:
//! a Generic Event Device (`ACPI0013`, ACPI 6.5 section 5.6.9) whose interrupt makes the guest
//! evaluate its `_EVT`, which reads the event register and sends the notifications; the control
//! method power button (`PNP0C0C`, section 4.8.2.2.1.2) it notifies; and one slot object per
//! device number of each hot-pluggable PCI root, which Linux's `acpiphp` drives.
//!
//! ```text
//! Device (\_SB_.GED0) {
//!     _HID "ACPI0013", _UID 0, _CRS { Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) }
//!     OperationRegion (GREG, SystemMemory, base, 0x18)
//!     Field (GREG, DWordAcc, NoLock, Preserve) { GEVT, GSEG, GPRS, GINS, GREM, GEJ0 (32 bits each) }
//!     Mutex (GLCK, 0)
//!     Method (_EVT, 1, Serialized) { Local0 = GEVT; power button: Notify (PWRB, 0x80);
//!                                    slots: \_SB_.PCIn.PSCN () for each hot-pluggable root }
//! }
//! Device (\_SB_.PWRB) { _HID EISAID("PNP0C0C"), _UID 0 }
//! Scope (\_SB_.PCIn) {
//!     Device (S001) { _ADR 0x00010000, _SUN, Method _STA (present bit of GPRS), Method _EJ0 }
//!     ... one per device number 1-31
//!     Method (PSCN) { GINS, GREM of segment n: Notify (Sxxx, 1) per inserted slot,
//!                     Notify (Sxxx, 3) per slot the host wants removed }
//! }
//! ```
//!
//! # The registers (32 bits each, at [`HotplugController::base`])
//!
//! | offset | name | access | meaning |
//! |---|---|---|---|
//! | [`REG_EVENTS`] | GEVT | read, cleared by the read | [`EVENT_POWER_BUTTON`], [`EVENT_PCI_SLOTS`] |
//! | [`REG_SEGMENT`] | GSEG | write | the PCI segment the next four registers are about |
//! | [`REG_PRESENT`] | GPRS | read | bit N: device number N of that segment holds a device |
//! | [`REG_INSERTED`] | GINS | read, cleared by the read | bit N: a device arrived at N |
//! | [`REG_REMOVING`] | GREM | read, cleared by the read | bit N: the host asks the guest to eject N |
//! | [`REG_EJECT`] | GEJ0 | write | bit N: the guest ejected N (`_EJ0`) |
//!
//! The device raises its edge-triggered interrupt whenever it sets a GEVT bit. The AML takes
//! `GLCK` around every GSEG write and the reads that follow, so that the event method and a
//! slot's `_STA`/`_EJ0` on another thread do not interleave.
//!
//! Notification values (section 5.6.6): 0x80 to the power button is "button pressed"; 1 (device
//! check) to a slot makes `acpiphp` rescan it and add what `_STA` says is present, 3 (eject
//! request) makes it release the function and evaluate `_EJ0`.

use acpi_tables::aml::{
    Acquire, And, Device, EISAName, Field, FieldAccessType, FieldEntry, FieldLockRule, FieldUpdateRule, If,
    Interrupt, Local, Method, MethodCall, Mutex, Name, Notify, OpRegion, OpRegionSpace, Path, Release,
    ResourceTemplate, Return, Scope, Store, Zero,
};
use acpi_tables::Aml;

use crate::description::HotplugController;
use crate::error::Error;
use crate::name_seg::NameSeg;

/// GEVT: pending events, cleared by the read.
pub const REG_EVENTS: u64 = 0x00;
/// GSEG: the PCI segment GPRS, GINS, GREM and GEJ0 refer to.
pub const REG_SEGMENT: u64 = 0x04;
/// GPRS: occupied device numbers of the selected segment.
pub const REG_PRESENT: u64 = 0x08;
/// GINS: device numbers that received a device since the last read.
pub const REG_INSERTED: u64 = 0x0c;
/// GREM: device numbers whose device the host asks the guest to eject.
pub const REG_REMOVING: u64 = 0x10;
/// GEJ0: the guest ejected these device numbers.
pub const REG_EJECT: u64 = 0x14;
/// Size of the register block.
pub const REGISTERS_SIZE: u64 = 0x18;
/// GEVT bit: the power button was pressed.
pub const EVENT_POWER_BUTTON: u32 = 1 << 0;
/// GEVT bit: GINS or GREM of some hot-pluggable segment has bits set.
pub const EVENT_PCI_SLOTS: u32 = 1 << 1;
/// The device numbers a hot-pluggable root declares (0 is the host bridge).
pub const SLOTS: std::ops::RangeInclusive<u8> = 1..=31;

/// Notify value "device check" (ACPI 6.5 section 5.6.6).
const NOTIFY_DEVICE_CHECK: u8 = 1;
/// Notify value "eject request".
const NOTIFY_EJECT_REQUEST: u8 = 3;
/// Notify value of a control method power button press (section 4.8.2.2.1.2).
const NOTIFY_POWER_BUTTON: u8 = 0x80;
/// `_STA` of a present, enabled, shown and functioning device.
const STA_PRESENT: u8 = 0x0f;
/// Acquire timeout meaning "wait forever".
const WAIT_FOREVER: u16 = 0xffff;

const GED: &str = "\\_SB_.GED0";
const LOCK: &str = "\\_SB_.GED0.GLCK";

fn field(name: &str) -> Path {
    Path::new(&format!("{GED}.{name}"))
}

/// `Device (\_SB_.GED0)` and, with a power button, `Device (\_SB_.PWRB)`, then one slot scope
/// per hot-pluggable segment. `root_name(segment)` names the `PNP0A08` device of a segment.
pub(crate) fn encode(
    controller: &HotplugController,
    root_name: impl Fn(u16) -> Option<NameSeg>,
) -> Result<Vec<u8>, Error> {
    let roots = controller
        .segments
        .iter()
        .map(|&s| root_name(s).map(|n| (s, n)).ok_or(Error::HotplugSegmentWithoutRoot(s)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut aml = Vec::new();
    ged(controller, &roots).to_aml_bytes(&mut aml);
    if controller.power_button {
        let hid = EISAName::new("PNP0C0C");
        let (hid, uid) = (Name::new("_HID".into(), &hid), Name::new("_UID".into(), &Zero {}));
        Device::new("\\_SB_.PWRB".into(), vec![&hid, &uid]).to_aml_bytes(&mut aml);
    }
    for (segment, name) in &roots {
        slots(*segment, *name).to_aml_bytes(&mut aml);
    }
    Ok(aml)
}

/// Raw AML bytes kept alive for the borrowed trees of `acpi_tables`.
struct Bytes(Vec<u8>);

impl Aml for Bytes {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(&self.0);
    }
}

fn bytes(aml: &dyn Aml) -> Bytes {
    let mut v = Vec::new();
    aml.to_aml_bytes(&mut v);
    Bytes(v)
}

fn ged(controller: &HotplugController, roots: &[(u16, NameSeg)]) -> Bytes {
    let hid = Name::new("_HID".into(), &"ACPI0013");
    let uid = Name::new("_UID".into(), &Zero {});
    // Edge-triggered, active high, exclusive: the device pulses its line for each event.
    let interrupt = Interrupt::new(true, true, false, false, controller.gsi);
    let crs = Name::new("_CRS".into(), &ResourceTemplate::new(vec![&interrupt]));
    let region = OpRegion::new("GREG".into(), OpRegionSpace::SystemMemory, &controller.base, &REGISTERS_SIZE);
    let fields = Field::new(
        "GREG".into(),
        FieldAccessType::DWord,
        FieldLockRule::NoLock,
        FieldUpdateRule::Preserve,
        ["GEVT", "GSEG", "GPRS", "GINS", "GREM", "GEJ0"]
            .iter()
            .map(|n| FieldEntry::Named(*n.as_bytes().first_chunk().unwrap_or(b"____"), 32))
            .collect(),
    );
    let lock = Mutex::new("GLCK".into(), 0);

    let (local0, gevt) = (Local(0), field("GEVT"));
    let read_events = Store::new(&local0, &gevt);
    let pressed_bit = And::new(&Zero {}, &local0, &EVENT_POWER_BUTTON);
    let pwrb = Path::new("\\_SB_.PWRB");
    let notify_pwrb = Notify::new(&pwrb, &NOTIFY_POWER_BUTTON);
    let on_button = If::new(&pressed_bit, vec![&notify_pwrb]);
    let slots_bit = And::new(&Zero {}, &local0, &EVENT_PCI_SLOTS);
    let scans: Vec<MethodCall> = roots
        .iter()
        .map(|(_, name)| MethodCall::new(Path::new(&format!("\\_SB_.{}.PSCN", name.as_str())), vec![]))
        .collect();
    let scan_refs: Vec<&dyn Aml> = scans.iter().map(|c| c as &dyn Aml).collect();
    let on_slots = If::new(&slots_bit, scan_refs);
    let mut body: Vec<&dyn Aml> = vec![&read_events];
    if controller.power_button {
        body.push(&on_button);
    }
    if !roots.is_empty() {
        body.push(&on_slots);
    }
    let evt = Method::new("_EVT".into(), 1, true, body);
    bytes(&Device::new(GED.into(), vec![&hid, &uid, &crs, &region, &fields, &lock, &evt]))
}

/// `Scope (\_SB_.PCIn) { Device (Sxxx) ... Method (PSCN) }` for `segment`.
fn slots(segment: u16, root: NameSeg) -> Bytes {
    let acquire = Acquire::new(LOCK.into(), WAIT_FOREVER);
    let release = Release::new(LOCK.into());
    let gseg = field("GSEG");
    let select = Store::new(&gseg, &segment);
    let devices: Vec<Bytes> = SLOTS.map(|slot| slot_device(segment, slot)).collect();

    // PSCN: the inserted and removing bits of this segment, then one notification per bit.
    let (local0, local1, gins, grem) = (Local(0), Local(1), field("GINS"), field("GREM"));
    let read_inserted = Store::new(&local0, &gins);
    let read_removing = Store::new(&local1, &grem);
    let notifications: Vec<Bytes> = SLOTS
        .flat_map(|slot| {
            let name = slot_name(slot);
            let bit = 1u32 << slot;
            [(0u8, NOTIFY_DEVICE_CHECK), (1u8, NOTIFY_EJECT_REQUEST)].map(|(local, value)| {
                let local = Local(local);
                let test = And::new(&Zero {}, &local, &bit);
                let target = Path::new(name.as_str());
                let notify = Notify::new(&target, &value);
                bytes(&If::new(&test, vec![&notify]))
            })
        })
        .collect();
    let mut body: Vec<&dyn Aml> = vec![&acquire, &select, &read_inserted, &read_removing, &release];
    body.extend(notifications.iter().map(|n| n as &dyn Aml));
    let scan = Method::new("PSCN".into(), 0, true, body);

    let mut children: Vec<&dyn Aml> = devices.iter().map(|d| d as &dyn Aml).collect();
    children.push(&scan);
    bytes(&Scope::new(Path::new(&format!("\\_SB_.{}", root.as_str())), children))
}

/// `S` and the device number in hex: `S001` to `S01F`.
fn slot_name(slot: u8) -> NameSeg {
    // Device numbers are below 0x1000.
    NameSeg::indexed("S", usize::from(slot)).unwrap_or(NameSeg::literal(b"S000"))
}

fn slot_device(segment: u16, slot: u8) -> Bytes {
    let adr = Name::new("_ADR".into(), &(u32::from(slot) << 16));
    // Unique over the machine (section 6.1.12): segment * 32 + device number.
    let sun = Name::new("_SUN".into(), &(u32::from(segment) * 32 + u32::from(slot)));
    let acquire = Acquire::new(LOCK.into(), WAIT_FOREVER);
    let release = Release::new(LOCK.into());
    let gseg = field("GSEG");
    let select = Store::new(&gseg, &segment);
    let bit = 1u32 << slot;

    let (local0, gprs) = (Local(0), field("GPRS"));
    let read_present = Store::new(&local0, &gprs);
    let present = And::new(&Zero {}, &local0, &bit);
    let return_present = Return::new(&STA_PRESENT);
    let if_present = If::new(&present, vec![&return_present]);
    let return_absent = Return::new(&Zero {});
    let sta = Method::new(
        "_STA".into(),
        0,
        true,
        vec![&acquire, &select, &read_present, &release, &if_present, &return_absent],
    );

    let gej0 = field("GEJ0");
    let eject = Store::new(&gej0, &bit);
    let ej0 = Method::new("_EJ0".into(), 1, true, vec![&acquire, &select, &eject, &release]);
    bytes(&Device::new(Path::new(slot_name(slot).as_str()), vec![&adr, &sun, &sta, &ej0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(segments: Vec<u16>) -> HotplugController {
        HotplugController { base: 0xfeb0_0000, gsi: 23, power_button: true, segments }
    }

    fn root(segment: u16) -> Option<NameSeg> {
        NameSeg::indexed("PCI", usize::from(segment))
    }

    fn count(haystack: &[u8], needle: &[u8]) -> usize {
        haystack.windows(needle.len()).filter(|w| w == &needle).count()
    }

    #[test]
    fn every_slot_of_every_hotplug_root_is_declared() {
        let aml = encode(&controller(vec![1, 3]), root).unwrap();
        assert_eq!(count(&aml, b"ACPI0013"), 1);
        assert_eq!(count(&aml, b"PSCN"), 4, "two definitions, two calls from _EVT");
        assert_eq!(count(&aml, b"_EJ0"), 2 * 31);
        assert_eq!(count(&aml, b"_SUN"), 2 * 31);
        assert_eq!(count(&aml, b"S01F"), 2 * 3, "each slot: its device and two notifications");
    }

    #[test]
    fn a_segment_without_root_is_an_error() {
        let none = |_: u16| None;
        assert!(matches!(encode(&controller(vec![2]), none), Err(Error::HotplugSegmentWithoutRoot(2))));
    }

    #[test]
    fn power_button_only() {
        let aml = encode(&controller(vec![]), root).unwrap();
        assert_eq!(count(&aml, b"PWRB"), 2, "the device and the notification");
        assert_eq!(count(&aml, b"PSCN"), 0);
        let mut no_button = controller(vec![1]);
        no_button.power_button = false;
        let aml = encode(&no_button, root).unwrap();
        assert_eq!(count(&aml, b"PWRB"), 0);
    }
}
