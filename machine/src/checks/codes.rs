//! The catalogue of configuration checks: each code's severity, one-line
//! summary and explanation (`dmavm explain CODE`). Codes are stable: a
//! rule that goes away keeps its number unused, a new rule takes a new
//! one. Errors are DMA0xx, warnings DMA1xx.

use std::fmt;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The firmware tables could not declare the machine truthfully: `run`
    /// refuses to start it.
    Error,
    /// The machine runs, but a guest may get its DMA wrong.
    Warning,
}

impl Severity {
    /// `error` or `warning`, as the message lines say.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A check's stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// `direct-ram-access=off` on a bypassing host bridge.
    Dma001,
    /// A PCI device's coherency differs from its bridge's.
    Dma002,
    /// A per-device bypass on a translated hot-pluggable bridge.
    Dma003,
    /// The IOMMU in its own scope.
    Dma004,
    /// Two devices at one address.
    Dma005,
    /// `--iommu type=vtd` on a machine that is not x86_64.
    Dma006,
    /// A translated virtio-mmio device under `--iommu type=vtd`.
    Dma007,
    /// `coherent=off` against cacheable host accesses.
    Dma101,
    /// An IOMMU that every device bypasses.
    Dma102,
    /// Translated devices of different coherency, mixed-coherency=allow.
    Dma103,
    /// Bypassing devices next to an IOMMU, declared by ACPI VIOT only.
    Dma104,
    /// `--iommu type=vtd` with no translated function: no DMAR.
    Dma105,
    /// VT-d page walks declared non-coherent.
    Dma106,
}

struct Rule {
    code: &'static str,
    severity: Severity,
    summary: &'static str,
    explanation: &'static str,
}

impl Code {
    /// Every code, in order.
    pub const ALL: [Code; 13] = [
        Code::Dma001,
        Code::Dma002,
        Code::Dma003,
        Code::Dma004,
        Code::Dma005,
        Code::Dma006,
        Code::Dma007,
        Code::Dma101,
        Code::Dma102,
        Code::Dma103,
        Code::Dma104,
        Code::Dma105,
        Code::Dma106,
    ];

    fn rule(self) -> &'static Rule {
        match self {
            Code::Dma001 => &DMA001,
            Code::Dma002 => &DMA002,
            Code::Dma003 => &DMA003,
            Code::Dma004 => &DMA004,
            Code::Dma005 => &DMA005,
            Code::Dma006 => &DMA006,
            Code::Dma007 => &DMA007,
            Code::Dma101 => &DMA101,
            Code::Dma102 => &DMA102,
            Code::Dma103 => &DMA103,
            Code::Dma104 => &DMA104,
            Code::Dma105 => &DMA105,
            Code::Dma106 => &DMA106,
        }
    }

    /// `DMA001`, ...
    pub fn as_str(self) -> &'static str {
        self.rule().code
    }

    /// Whether a finding of this code stops `run`.
    pub fn severity(self) -> Severity {
        self.rule().severity
    }

    /// What the rule is about, in one line.
    pub fn summary(self) -> &'static str {
        self.rule().summary
    }

    /// Why it matters and what to do, for `dmavm explain`.
    pub fn explanation(self) -> &'static str {
        self.rule().explanation
    }

    /// The code named `text` (`DMA001`, `dma001`).
    pub fn parse(text: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const DMA001: Rule = Rule {
    code: "DMA001",
    severity: Severity::Error,
    summary: "a device asks to be translated on a host bridge that bypasses the IOMMU",
    explanation: "\
A PCI host bridge with direct-ram-access=on puts its whole segment outside
every IOMMU scope: the ACPI VIOT has no PCI range for that segment (a device
tree leaves it out of the root's iommu-map). A device on it that asks for
direct-ram-access=off would offer VIRTIO_F_ACCESS_PLATFORM and expect the
guest to program an IOMMU for it, but the guest is told no IOMMU covers it:
it would hand the device guest-physical addresses as if they were IOVAs, or
never attach it at all.

The rule is per bridge because that is what the firmware tables can say: a
VIOT range or iommu-map entry covers bus numbers, not one device's choice.

Fix: leave direct-ram-access out on the device (it inherits on), or put it on
a bridge with direct-ram-access=off, e.g.
  --pci-bridge id=fast,direct-ram-access=on --pci-bridge id=safe
  --disk path=a.img,transport=pci,bridge=safe",
};

const DMA002: Rule = Rule {
    code: "DMA002",
    severity: Severity::Error,
    summary: "a PCI device's coherency differs from its host bridge's",
    explanation: "\
A PCI function's DMA coherency is its host bridge's: ACPI declares _CCA on
the PNP0A08 root (PCI Firmware 3.3 and ACPI 6.5, 6.2.17, give functions no
_CCA of their own) and a device tree puts dma-coherent on the host bridge
node. A device asking for coherent=on below a coherent=off bridge (or the
reverse) cannot be declared: the guest would take the bridge's value and do
cache maintenance the device does not need, or skip maintenance it does.

Fix: leave coherent= out on PCI devices; put a device that needs the other
coherency on a bridge declared with it (--pci-bridge id=NAME,coherent=off
and bridge=NAME on the device), or use transport=mmio, where coherency is
per device.",
};

const DMA003: Rule = Rule {
    code: "DMA003",
    severity: Severity::Error,
    summary: "a device bypasses the IOMMU on a translated hot-pluggable bridge",
    explanation: "\
A hotplug=on bridge must have one IOMMU scope for all its slots, since the
firmware tables are written at boot and a device plugged in later lands in
whatever the tables said about its slot. dmavm therefore declares a
translated hot-pluggable bridge in scope whole, slots 1 to 31 (but the
IOMMU's own). A single device there with direct-ram-access=on would sit in
a slot the tables put in the IOMMU's scope: the guest would program the
IOMMU for it while it used guest-physical addresses.

Fix: put the bypassing device on another bridge, or make the whole bridge
bypass (--pci-bridge id=NAME,hotplug=on,direct-ram-access=on).",
};

const DMA004: Rule = Rule {
    code: "DMA004",
    severity: Severity::Error,
    summary: "the IOMMU is placed in its own scope",
    explanation: "\
The virtio-iommu reads its request queues at the addresses the guest writes
into them, guest-physical addresses: it is how mappings get made in the first
place, so nothing can translate the IOMMU's own accesses. The ACPI VIOT and
a device tree declare the IOMMU outside every scope; with
--iommu direct-ram-access=off it would have to be inside its own.

Fix: leave direct-ram-access out of --iommu (the IOMMU always reaches guest
memory directly, wherever it sits, even on a translated bridge).",
};

const DMA005: Rule = Rule {
    code: "DMA005",
    severity: Severity::Error,
    summary: "two devices sit at one address",
    explanation: "\
Explicit places (slot=N for a PCI device: device N on bus 0 of its host
bridge; addr=A for a virtio-mmio device: its register window and with it
its IOAPIC pin) must be unique. Two devices at one PCI slot would answer the
same configuration cycles, two at one window the same register accesses,
and the firmware tables would name one of them twice; their endpoint IDs in
the IOMMU's scope would collide too.

Devices without slot= or addr= take the first free place and never collide.

Fix: give each device its own slot= (1-31, per bridge) or addr=
(0xd0000000 + N * 0x1000, N from 0 to 18), or leave the key out.",
};

const DMA006: Rule = Rule {
    code: "DMA006",
    severity: Severity::Error,
    summary: "--iommu type=vtd on a machine that is not x86_64",
    explanation: "\
Intel VT-d is the IOMMU of x86 platforms: it is declared in the ACPI DMAR,
which only the x86_64 machine's firmware has, and an arm64 kernel has no
driver for it (CONFIG_INTEL_IOMMU depends on x86). An aarch64 machine is
described by a device tree, whose IOMMU binding dmavm implements for the
virtio-iommu (iommus, iommu-map).

Fix: on aarch64 use the virtio-iommu (--iommu, type=virtio is the default);
boot an x86_64 guest for VT-d.",
};

const DMA007: Rule = Rule {
    code: "DMA007",
    severity: Severity::Error,
    summary: "a translated virtio-mmio device under --iommu type=vtd",
    explanation: "\
A VT-d unit translates the functions its DMAR device scopes name. Linux's
intel-iommu matches PCI functions against PCI-endpoint scopes (and whole
segments, INCLUDE_PCI_ALL); a platform device such as a virtio-mmio
transport could only be named by an ACPI namespace-device scope, which
needs an ANDD structure naming the device's ACPI object and a source ID
for it. dmavm declares no such scopes, so the guest would find no unit for
the device: it would hand it guest-physical addresses as if they were
IOVAs while dmavm translated every access, and the device would fault on
its first ring access.

Fix: put the device on PCI (transport=pci), where its DRHD scope names it,
or let it bypass the IOMMU (direct-ram-access=on).",
};

const DMA101: Rule = Rule {
    code: "DMA101",
    severity: Severity::Warning,
    summary: "a device is declared non-coherent, but dmavm accesses guest memory cacheably",
    explanation: "\
coherent=off declares the device non-coherent (_CCA 0, no dma-coherent).
dmavm's device models reach guest memory through the host's ordinary,
cacheable mappings, so the devices are in fact coherent. A guest told
otherwise maps their buffers non-cacheable and does cache maintenance
around each transfer. On arm64 the two mappings are mismatched aliases of
the same memory: the device's cacheable writes may sit in a cache the
guest's non-cacheable reads never look at, and the guest's writes may be
seen late or out of order, so the ring seems never to advance and the
device appears to hang. On x86 the guest treats DMA as coherent anyway.

The declaration is accepted because it is useful for testing a guest's
cache-maintenance paths; do not use it to run a workload. Fix: leave
coherent= out (on, the default) on the device or its host bridge.",
};

const DMA102: Rule = Rule {
    code: "DMA102",
    severity: Severity::Warning,
    summary: "an IOMMU is configured, but every device bypasses it",
    explanation: "\
Every device has direct-ram-access=on (its own or its host bridge's), so the
IOMMU's scope is empty: the VIOT (or device tree) lists no device behind it,
and the guest gets an IOMMU that translates nothing. A guest that relies on
the IOMMU to isolate devices (DMA protection, VFIO in the guest) has no
isolation at all, while the configuration suggests it has.

Fix: give the devices that should be isolated direct-ram-access=off (the
default, on PCI through a bridge with direct-ram-access=off), or drop
--iommu.",
};

const DMA103: Rule = Rule {
    code: "DMA103",
    severity: Severity::Warning,
    summary: "translated devices of different coherency may share an IOMMU domain",
    explanation: "\
The IOMMU translates both coherent and non-coherent devices, and with
--iommu mixed-coherency=allow (the default, what hardware IOMMUs do) it
accepts an ATTACH that puts both kinds in one domain. A domain's mappings
carry one set of memory attributes: the guest creates each mapping for the
device it maps for (cacheable for a coherent device, non-cacheable for a
non-coherent one), and a buffer shared through the domain is then wrong for
the other device. A guest puts devices in one domain when they share an
IOMMU group or when it assigns them to one user (VFIO in the guest).

Fix: --iommu mixed-coherency=reject: the IOMMU refuses such an ATTACH with
S_UNSUPP, so the guest keeps the two kinds in separate domains. Or give the
translated devices one coherency.",
};

const DMA104: Rule = Rule {
    code: "DMA104",
    severity: Severity::Warning,
    summary: "devices bypass the IOMMU, which x86 guests before Linux 5.14 cannot know",
    explanation: "\
On x86 the only table that tells a guest which devices the virtio-iommu
translates, and so which bypass it, is the ACPI VIOT; Linux reads it from
5.14 on (CONFIG_ACPI_VIOT). An older guest sees the IOMMU but not its
topology: it attaches no device to it and cannot know that some devices
bypass it while others are translated. It then drives every device alike:
the ones dmavm translates get guest-physical addresses as IOVAs and fault,
the bypassing ones work by accident. A machine that mixes translated and
bypassing devices is only meaningful to a VIOT-aware guest.

A device tree (arm64) has said this per device (iommus, iommu-map) since
virtio-iommu support began, so the warning is for ACPI only.

Fix: boot Linux 5.14 or later, or translate every device (leave
direct-ram-access out), or drop --iommu for an older guest.",
};

const DMA105: Rule = Rule {
    code: "DMA105",
    severity: Severity::Warning,
    summary: "--iommu type=vtd, but no PCI function is translated",
    explanation: "\
A VT-d unit is declared for each PCI segment with translated functions
(direct-ram-access=off, of their own or their host bridge's) or with a
translated hotplug=on bridge. With none, the machine has no unit and no
DMAR table at all: the guest sees no IOMMU, and a guest that relies on one
to isolate devices (DMA protection, VFIO in the guest) has none, while the
configuration suggests it has.

Fix: give the PCI devices to isolate direct-ram-access=off (the default on
a bridge with direct-ram-access=off), or drop --iommu.",
};

const DMA106: Rule = Rule {
    code: "DMA106",
    severity: Severity::Warning,
    summary: "VT-d page walks declared non-coherent, but dmavm reads page tables cacheably",
    explanation: "\
--iommu type=vtd,coherent=off clears the page-walk coherency bit (ECAP.C)
of every VT-d unit: the guest is told the units read root, context and page
tables without snooping the CPU caches, so after each update it writes the
changed entries back to memory (Linux: clflush_cache_range, through
iommu_flush_cache when !ecap_coherent). dmavm's units read guest memory
through the host's ordinary, cacheable mappings: the flushes are not needed
and cost the guest a cache-line flush per page-table update.

The declaration is accepted to test a guest's flush path; do not use it to
run a workload. Fix: leave coherent= out of --iommu (on, the default).",
};
