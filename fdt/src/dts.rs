//! A device tree source (DTS) rendering of a blob, for `describe` and for people: it walks the
//! blob with [`crate::parse`], so it shows exactly what the guest gets, and `dtc -I dts -O dtb`
//! compiles it back to the same tree.
//!
//! Values are shown the way `dtc -O dts` shows them: a property that reads as a list of
//! printable strings as strings, one whose length is a multiple of 4 as 32-bit cells, anything
//! else as bytes. Unlike dtc's output, every node with a `phandle` gets a label and the
//! properties that refer to nodes (`interrupt-parent`, `clocks`, `iommus`, `msi-parent`,
//! `iommu-map`, `msi-map`) show `&label` where the blob has the phandle, so the text reads
//! better and dtc's reference checks pass when it is compiled. Each `phandle` property is kept
//! as well, so the compiled tree has the same phandle values.

use std::fmt::Write;

use crate::error::Error;
use crate::tree::{parse, Node, Property};

/// A node with a phandle, and its label.
struct Target<'a> {
    phandle: u32,
    node: &'a Node,
    label: String,
}

/// The blob as DTS text.
pub fn to_dts(blob: &[u8]) -> Result<String, Error> {
    let tree = parse(blob)?;
    let mut out = String::from("/dts-v1/;\n\n");
    for r in &tree.reserved {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "/memreserve/ {:#018x} {:#018x};", r.base, r.size);
    }
    if !tree.reserved.is_empty() {
        out.push('\n');
    }
    node(&mut out, &tree.root, 0, &targets(&tree.root), Context { parent: None, interrupt_cells: None });
    Ok(out)
}

/// Every node with a phandle, labelled after its name without the unit address (made a valid,
/// unique label).
fn targets(root: &Node) -> Vec<Target<'_>> {
    let mut out: Vec<Target> = Vec::new();
    for (_, n) in root.walk() {
        let Some(phandle) = n.u32("phandle") else { continue };
        let base = n.name.split('@').next().unwrap_or_default();
        let mut label: String =
            base.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        if !label.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            label.insert(0, '_');
        }
        if out.iter().any(|t| t.label == label) {
            label = format!("{label}_{phandle}");
        }
        out.push(Target { phandle, node: n, label });
    }
    out
}

/// What the cells of a node's properties depend on outside the node.
#[derive(Clone, Copy)]
struct Context<'a> {
    /// The parent node (its `#address-cells` and `#size-cells` shape `reg` and `ranges`).
    parent: Option<&'a Node>,
    /// `#interrupt-cells` of the node's interrupt parent, if known.
    interrupt_cells: Option<usize>,
}

fn node(out: &mut String, n: &Node, depth: usize, targets: &[Target], cx: Context) {
    let indent = "\t".repeat(depth);
    let name = if n.name.is_empty() { "/" } else { &n.name };
    let label = targets.iter().find(|t| std::ptr::eq(t.node, n)).map(|t| format!("{}: ", t.label));
    let _ = writeln!(out, "{indent}{}{name} {{", label.unwrap_or_default());
    // An `interrupt-parent` here applies to this node and, unless they name their own, its
    // children.
    let interrupt_cells = n
        .u32("interrupt-parent")
        .and_then(|ph| targets.iter().find(|t| t.phandle == ph))
        .and_then(|t| t.node.u32("#interrupt-cells"))
        .map(|c| c as usize)
        .or(cx.interrupt_cells);
    let cx = Context { interrupt_cells, ..cx };
    for p in &n.properties {
        let _ = write!(out, "{indent}\t{}", p.name);
        if !p.value.is_empty() {
            out.push_str(" = ");
            value(out, p, n, cx, targets);
        }
        out.push_str(";\n");
    }
    for (i, c) in n.children.iter().enumerate() {
        if i > 0 || !n.properties.is_empty() {
            out.push('\n');
        }
        node(out, c, depth + 1, targets, Context { parent: Some(n), interrupt_cells });
    }
    let _ = writeln!(out, "{indent}}};");
}

/// `#address-cells` and `#size-cells` of `n`, with the Devicetree Specification's defaults.
fn address_cells(n: Option<&Node>) -> (usize, usize) {
    let get = |name, default| n.and_then(|n| n.u32(name)).map_or(default, |c| c as usize);
    (get("#address-cells", 2), get("#size-cells", 1))
}

/// Where each entry of a `reg`, `ranges` or `interrupts` property starts, from the cell counts
/// around it; `None` for other properties or when the cells do not divide into entries.
fn entry_starts(p: &Property, cells: usize, n: &Node, cx: Context) -> Option<Vec<usize>> {
    let stride = match p.name.as_str() {
        "reg" => {
            let (address, size) = address_cells(cx.parent);
            address + size
        }
        "ranges" => {
            let (child_address, child_size) = address_cells(Some(n));
            child_address + address_cells(cx.parent).0 + child_size
        }
        "interrupts" => cx.interrupt_cells?,
        _ => return None,
    };
    (stride > 0 && cells % stride == 0).then(|| (0..cells).step_by(stride).collect())
}

/// Which cells of `p` are phandles, and where each entry starts, for the properties that
/// refer to nodes: `None` when `p` is not one of them or does not parse as one (then it is shown
/// as plain cells).
fn phandle_cells(p: &Property, cells: &[u32], targets: &[Target]) -> Option<(Vec<bool>, Vec<usize>)> {
    let target_cells = |phandle: u32, count: &str| {
        targets.iter().find(|t| t.phandle == phandle).and_then(|t| t.node.u32(count)).map(|c| c as usize)
    };
    // (the target's cell count property, cells before the phandle, cells after the specifier).
    let (count, before, after) = match p.name.as_str() {
        "interrupt-parent" => return (cells.len() == 1).then(|| (vec![true], vec![0])),
        "clocks" => ("#clock-cells", 0, 0),
        "iommus" => ("#iommu-cells", 0, 0),
        "msi-parent" => ("#msi-cells", 0, 0),
        // <rid-base &target target-base length> (pci/pci-iommu.txt, pci/pci-msi.txt).
        "iommu-map" => ("#iommu-cells", 1, 1),
        "msi-map" => ("#msi-cells", 1, 1),
        _ => return None,
    };
    let mut is_phandle = vec![false; cells.len()];
    let mut starts = Vec::new();
    let mut i = 0;
    while i < cells.len() {
        starts.push(i);
        let at = i + before;
        let phandle = *cells.get(at)?;
        *is_phandle.get_mut(at)? = true;
        i = at + 1 + target_cells(phandle, count)? + after;
    }
    (i == cells.len()).then_some((is_phandle, starts))
}

/// Whether `v` is one or more printable, NUL-terminated, non-empty strings.
fn is_strings(v: &[u8]) -> bool {
    let Some(body) = v.strip_suffix(&[0]) else { return false };
    !body.is_empty()
        && body.split(|&b| b == 0).all(|s| !s.is_empty() && s.iter().all(|&b| (0x20..0x7f).contains(&b)))
}

fn value(out: &mut String, p: &Property, n: &Node, cx: Context, targets: &[Target]) {
    let v = &p.value;
    if is_strings(v) {
        let strings: Vec<String> = v[..v.len() - 1]
            .split(|&b| b == 0)
            .map(|s| {
                let mut q = String::from("\"");
                for &b in s {
                    if b == b'"' || b == b'\\' {
                        q.push('\\');
                    }
                    q.push(char::from(b));
                }
                q.push('"');
                q
            })
            .collect();
        out.push_str(&strings.join(", "));
    } else if v.len() % 4 == 0 {
        let cells: Vec<u32> =
            v.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
        let (refs, starts) = match phandle_cells(p, &cells, targets) {
            Some((refs, starts)) => (Some(refs), Some(starts)),
            None => (None, entry_starts(p, cells.len(), n, cx)),
        };
        let shown: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let label = refs
                    .as_ref()
                    .filter(|r| r[i])
                    .and_then(|_| targets.iter().find(|t| t.phandle == c))
                    .map(|t| format!("&{}", t.label));
                label.unwrap_or_else(|| format!("{c:#x}"))
            })
            .collect();
        // One <...> per entry where the entries are known, else one for all cells.
        let mut bounds = starts.unwrap_or_else(|| vec![0]);
        bounds.push(shown.len());
        let groups: Vec<String> =
            bounds.windows(2).map(|w| format!("<{}>", shown[w[0]..w[1]].join(" "))).collect();
        out.push_str(&groups.join(", "));
    } else {
        let bytes: Vec<String> = v.iter().map(|b| format!("{b:02x}")).collect();
        let _ = write!(out, "[{}]", bytes.join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_kind_of_value() {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_string_list("compatible", vec!["a,b".into(), "c\"d\\".into()]).unwrap();
        w.property_array_u32("cells", &[1, 0xdead_beef]).unwrap();
        w.property("bytes", &[1, 2, 0xff]).unwrap();
        w.property("empty-string", &[0]).unwrap();
        w.property_null("flag").unwrap();
        w.property_array_u32("interrupt-parent", &[5]).unwrap();
        w.property_array_u32("iommus", &[5, 0x17]).unwrap();
        w.property_array_u32("iommu-map", &[0, 5, 0, 8, 9, 5, 9, 0x10]).unwrap();
        w.property_array_u32("clocks", &[6]).unwrap();
        let c = w.begin_node("child@1").unwrap();
        w.property_phandle(5).unwrap();
        w.property_u32("#iommu-cells", 1).unwrap();
        w.end_node(c).unwrap();
        w.end_node(root).unwrap();
        let dts = to_dts(&w.finish().unwrap()).unwrap();
        assert!(dts.starts_with("/dts-v1/;\n\n/ {\n"), "{dts}");
        assert!(dts.contains("\tcompatible = \"a,b\", \"c\\\"d\\\\\";\n"), "{dts}");
        assert!(dts.contains("\tcells = <0x1 0xdeadbeef>;\n"), "{dts}");
        assert!(dts.contains("\tbytes = [01 02 ff];\n"), "{dts}");
        assert!(dts.contains("\tempty-string = [00];\n"), "{dts}");
        assert!(dts.contains("\tflag;\n"), "{dts}");
        assert!(dts.contains("\tinterrupt-parent = <&child>;\n"), "{dts}");
        assert!(dts.contains("\tiommus = <&child 0x17>;\n"), "{dts}");
        assert!(dts.contains("\tiommu-map = <0x0 &child 0x0 0x8>, <0x9 &child 0x9 0x10>;\n"), "{dts}");
        // A phandle that resolves to nothing stays a number.
        assert!(dts.contains("\tclocks = <0x6>;\n"), "{dts}");
        assert!(
            dts.contains("\tchild: child@1 {\n\t\tphandle = <0x5>;\n\t\t#iommu-cells = <0x1>;\n\t};\n"),
            "{dts}"
        );
        assert!(dts.ends_with("};\n"), "{dts}");
    }
}
