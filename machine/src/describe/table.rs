//! The rows as aligned text columns, for people.

use super::rows::{Description, Row};
use crate::Arch;

use crate::options::on_off_word as on_off;

fn yes_no(v: bool) -> &'static str {
    if v {
        "yes"
    } else {
        "no"
    }
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

/// Column titles, then the cells of every row, for one architecture. The
/// DMA property columns are named after the properties (docs/architecture.md's DMA
/// contract); the firmware columns after what the guest reads.
pub fn cells(description: &Description) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut titles = vec![
        "ID",
        "KIND",
        "TRANSPORT",
        "ADDRESS",
        "INTERRUPT",
        "COHERENT",
        "DIRECT-RAM-ACCESS",
        "IOMMU-SCOPE",
        "ENDPOINT",
        "ACCESS_PLATFORM",
    ];
    // Only machines with a restricted DMA pool get its column.
    let pools = description.devices.iter().any(|r| r.dma_pool.is_some());
    if pools {
        titles.push("DMA-POOL");
    }
    match description.arch {
        Arch::X86_64 => titles.extend(["ACPI", "_CCA", "VIOT"]),
        Arch::Aarch64 => titles.extend(["DT-NODE", "DMA-COHERENT", "IOMMUS/IOMMU-MAP"]),
    }
    // Only a machine with VT-d units has a DMAR, and only then its column.
    let dmar = description.arch == Arch::X86_64
        && description.devices.iter().any(|r| r.acpi.as_ref().is_some_and(|a| a.dmar.is_some()));
    if dmar {
        titles.push("DMAR");
    }
    let rows = description.devices.iter().map(|r| row_cells(description.arch, r, dmar, pools)).collect();
    (titles, rows)
}

/// A pool as `4M@0x7fc00000` (a bridge's, on its functions: `bridge:4M@...`).
fn pool_cell(r: &Row) -> String {
    or_dash(r.dma_pool.map(|p| {
        let size =
            if p.size % (1 << 20) == 0 { format!("{}M", p.size >> 20) } else { format!("{}K", p.size >> 10) };
        let shared = p.owner == crate::PoolOwner::Bridge && r.kind != super::rows::Kind::PciHostBridge;
        format!("{}{size}@{:#x}", if shared { "bridge:" } else { "" }, p.base)
    }))
}

fn row_cells(arch: Arch, r: &Row, dmar: bool, pools: bool) -> Vec<String> {
    let mut cells = vec![
        r.id.clone(),
        r.kind.to_string(),
        r.transport.to_string(),
        r.address.to_string(),
        r.interrupt.to_string(),
        on_off(r.coherent).into(),
        on_off(r.direct_ram_access).into(),
        yes_no(r.in_iommu_scope).into(),
        or_dash(r.endpoint.map(|e| format!("{e:#x}"))),
        or_dash(r.access_platform.map(|a| yes_no(a).into())),
    ];
    if pools {
        cells.push(pool_cell(r));
    }
    match arch {
        Arch::X86_64 => {
            let acpi = r.acpi.as_ref();
            cells.push(or_dash(acpi.map(|a| a.path.clone())));
            cells.push(or_dash(acpi.map(|a| a.cca.to_string())));
            cells.push(or_dash(acpi.and_then(|a| a.viot.as_ref()).map(ToString::to_string)));
            if dmar {
                cells.push(or_dash(acpi.and_then(|a| a.dmar.as_ref()).map(ToString::to_string)));
            }
        }
        Arch::Aarch64 => {
            let dt = r.dt.as_ref();
            cells.push(or_dash(dt.map(|d| d.path.clone())));
            cells.push(or_dash(dt.map(|d| yes_no(d.dma_coherent).into())));
            let refs = dt.and_then(|d| match (d.iommus, d.iommu_map.as_slice()) {
                (Some(id), _) => Some(format!("<&viommu {id:#x}>")),
                (None, []) => None,
                (None, map) => Some(map.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")),
            });
            cells.push(or_dash(refs));
        }
    }
    cells
}

/// The description as text: a title line and one line per row, columns
/// two spaces apart, no trailing spaces; then, after a blank line, the
/// virtio-iommu's boot bypass and each finding as `run` would print it
/// (`warning: [DMA101] ...`).
pub fn render(description: &Description) -> String {
    let (titles, rows) = cells(description);
    let mut widths: Vec<usize> = titles.iter().map(|t| t.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let titles: Vec<String> = titles.iter().map(|t| t.to_string()).collect();
    let lines = if rows.is_empty() { &[][..] } else { std::slice::from_ref(&titles) };
    for line in lines.iter().chain(&rows) {
        let mut text = String::new();
        for (cell, w) in line.iter().zip(&widths) {
            text.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    let notes: Vec<String> = description
        .devices
        .iter()
        .filter_map(|r| {
            Some(if r.boot_bypass? {
                format!(
                    "{}: boot-bypass=on: a device the guest's driver has not attached to a domain reaches memory \
                     untranslated",
                    r.id
                )
            } else {
                format!(
                    "{}: boot-bypass=off: a device the guest's driver has not attached to a domain faults on \
                     every access",
                    r.id
                )
            })
        })
        .collect();
    let more = !notes.is_empty() || !description.findings.is_empty();
    if more && !out.is_empty() {
        out.push('\n');
    }
    for note in notes {
        out.push_str(&note);
        out.push('\n');
    }
    for f in &description.findings {
        out.push_str(&format!("{}: [{}] {}\n", f.severity, f.code, f.message));
    }
    out
}
