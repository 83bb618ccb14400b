//! A reader of flattened device tree blobs (the Devicetree Specification v0.4, chapter 5): the
//! blob back as a tree of nodes and raw properties, for the DTS rendering and for checking
//! what a blob says.

use crate::description::MemoryRange;
use crate::error::Error;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
/// Header size of version 17.
const HEADER_LEN: usize = 40;
/// Oldest version whose layout this reader knows (`last_comp_version` must be at most this).
const VERSION: u32 = 17;
/// Deepest nesting accepted, Linux's limit (FDT_MAX_DEPTH in drivers/of/fdt.c); it also bounds
/// the recursion of [`Node::walk`] and of dropping a tree.
const MAX_DEPTH: usize = 64;

/// A whole blob: its memory reservations and its root node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// The memory reservation block (`/memreserve/` entries).
    pub reserved: Vec<MemoryRange>,
    /// The root node (name "").
    pub root: Node,
}

/// A node: its name (with unit address), properties in blob order, children in blob order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `name@unit-address`, or "" for the root.
    pub name: String,
    /// Properties in the order of the blob.
    pub properties: Vec<Property>,
    /// Child nodes in the order of the blob.
    pub children: Vec<Node>,
}

/// A property and its raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// Its name.
    pub name: String,
    /// Its value, big-endian cells or NUL-terminated strings as the property's binding says.
    pub value: Vec<u8>,
}

impl Node {
    /// The raw value of property `name`.
    pub fn property(&self, name: &str) -> Option<&[u8]> {
        self.properties.iter().find(|p| p.name == name).map(|p| p.value.as_slice())
    }

    /// Whether the node has property `name`.
    pub fn has(&self, name: &str) -> bool {
        self.property(name).is_some()
    }

    /// Property `name` as 32-bit cells; `None` if absent or not a whole number of cells.
    pub fn u32s(&self, name: &str) -> Option<Vec<u32>> {
        let v = self.property(name)?;
        (v.len() % 4 == 0)
            .then(|| v.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// Property `name` as one 32-bit cell.
    pub fn u32(&self, name: &str) -> Option<u32> {
        match self.u32s(name)?.as_slice() {
            [v] => Some(*v),
            _ => None,
        }
    }

    /// Property `name` as a string list; `None` if absent or not NUL-terminated UTF-8 strings.
    pub fn strings(&self, name: &str) -> Option<Vec<&str>> {
        let v = self.property(name)?;
        let body = v.strip_suffix(&[0])?;
        body.split(|&b| b == 0).map(|s| std::str::from_utf8(s).ok()).collect()
    }

    /// Property `name` as one string.
    pub fn string(&self, name: &str) -> Option<&str> {
        match self.strings(name)?.as_slice() {
            [s] => Some(s),
            _ => None,
        }
    }

    /// The child called `name` (with its unit address, if it has one).
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The node at `path` below this one ("/" or "" is this node, "/cpus/cpu@0" a grandchild).
    pub fn find(&self, path: &str) -> Option<&Node> {
        path.split('/').filter(|p| !p.is_empty()).try_fold(self, |node, name| node.child(name))
    }

    /// This node and every node below it, depth first, with their paths from this node ("/"
    /// for this node itself).
    pub fn walk(&self) -> Vec<(String, &Node)> {
        fn visit<'a>(node: &'a Node, path: String, out: &mut Vec<(String, &'a Node)>) {
            let base = if path == "/" { String::new() } else { path.clone() };
            out.push((path, node));
            for c in &node.children {
                visit(c, format!("{base}/{}", c.name), out);
            }
        }
        let mut out = Vec::new();
        visit(self, "/".into(), &mut out);
        out
    }

    /// The path and node whose `phandle` is `phandle`.
    pub fn by_phandle(&self, phandle: u32) -> Option<(String, &Node)> {
        self.walk().into_iter().find(|(_, n)| n.u32("phandle") == Some(phandle))
    }
}

/// Bounds-checked big-endian reads from the blob.
struct Reader<'a> {
    blob: &'a [u8],
}

impl Reader<'_> {
    fn bytes(&self, at: usize, len: usize, what: &'static str) -> Result<&[u8], Error> {
        at.checked_add(len)
            .and_then(|end| self.blob.get(at..end))
            .ok_or(Error::Malformed { offset: at, what })
    }

    fn u32(&self, at: usize, what: &'static str) -> Result<u32, Error> {
        let b = self.bytes(at, 4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&self, at: usize, what: &'static str) -> Result<u64, Error> {
        Ok(u64::from(self.u32(at, what)?) << 32 | u64::from(self.u32(at + 4, what)?))
    }

    /// The NUL-terminated string at `at`, and its length without the NUL.
    fn cstr(&self, at: usize, end: usize, what: &'static str) -> Result<(String, usize), Error> {
        let region = self.blob.get(at..end).ok_or(Error::Malformed { offset: at, what })?;
        let len = region.iter().position(|&b| b == 0).ok_or(Error::Malformed { offset: at, what })?;
        let s = std::str::from_utf8(&region[..len]).map_err(|_| Error::Malformed { offset: at, what })?;
        Ok((s.to_string(), len))
    }
}

fn align4(at: usize) -> usize {
    at.next_multiple_of(4)
}

/// Reads a blob back; every offset and length is checked, so a malformed blob is an error.
pub fn parse(blob: &[u8]) -> Result<Tree, Error> {
    let r = Reader { blob };
    if r.u32(0, "no FDT header")? != FDT_MAGIC {
        return Err(Error::Malformed { offset: 0, what: "bad magic" });
    }
    let field = |i: usize| r.u32(4 * i, "truncated header").map(|v| v as usize);
    let (total, off_struct, off_strings, off_rsv) = (field(1)?, field(2)?, field(3)?, field(4)?);
    let (last_comp, size_strings, size_struct) = (field(6)?, field(8)?, field(9)?);
    if total > blob.len() || total < HEADER_LEN {
        return Err(Error::Malformed { offset: 4, what: "totalsize does not match the blob" });
    }
    if last_comp > VERSION as usize {
        return Err(Error::Malformed { offset: 24, what: "unsupported version" });
    }
    let blob = &blob[..total];
    let r = Reader { blob };
    let struct_end = off_struct.checked_add(size_struct).filter(|&e| e <= total);
    let strings_end = off_strings.checked_add(size_strings).filter(|&e| e <= total);
    let (Some(struct_end), Some(strings_end)) = (struct_end, strings_end) else {
        return Err(Error::Malformed { offset: 8, what: "structure or strings block outside the blob" });
    };

    let mut reserved = Vec::new();
    let mut at = off_rsv;
    loop {
        let (base, size) = (r.u64(at, "truncated reservation")?, r.u64(at + 8, "truncated reservation")?);
        at += 16;
        if base == 0 && size == 0 {
            break;
        }
        reserved.push(MemoryRange::new(base, size));
    }

    // Open nodes, innermost last.
    let mut stack: Vec<Node> = Vec::new();
    let mut root = None;
    let mut at = off_struct;
    loop {
        let token = r.u32(at, "truncated structure block")?;
        if at + 4 > struct_end {
            return Err(Error::Malformed { offset: at, what: "structure block ends without FDT_END" });
        }
        at += 4;
        match token {
            FDT_BEGIN_NODE => {
                if root.is_some() {
                    return Err(Error::Malformed { offset: at, what: "a second root node" });
                }
                if stack.len() == MAX_DEPTH {
                    return Err(Error::Malformed { offset: at, what: "nodes nested too deep" });
                }
                let (name, len) = r.cstr(at, struct_end, "unterminated node name")?;
                at = align4(at + len + 1);
                stack.push(Node { name, properties: Vec::new(), children: Vec::new() });
            }
            FDT_END_NODE => {
                let node = stack
                    .pop()
                    .ok_or(Error::Malformed { offset: at, what: "FDT_END_NODE outside a node" })?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            FDT_PROP => {
                let len = r.u32(at, "truncated property")? as usize;
                let name_off = r.u32(at + 4, "truncated property")? as usize;
                let value = r.bytes(at + 8, len, "property value outside the blob")?.to_vec();
                let name_at = off_strings.checked_add(name_off).ok_or(Error::Malformed {
                    offset: at,
                    what: "property name outside the strings block",
                })?;
                let (name, _) = r.cstr(name_at, strings_end, "bad property name")?;
                let node = stack
                    .last_mut()
                    .ok_or(Error::Malformed { offset: at, what: "property outside a node" })?;
                node.properties.push(Property { name, value });
                at = align4(at + 8 + len);
            }
            FDT_NOP => {}
            FDT_END => break,
            _ => return Err(Error::Malformed { offset: at - 4, what: "unknown structure token" }),
        }
    }
    if !stack.is_empty() {
        return Err(Error::Malformed { offset: at, what: "FDT_END inside a node" });
    }
    let root = root.ok_or(Error::Malformed { offset: off_struct, what: "no root node" })?;
    Ok(Tree { reserved, root })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w =
            vm_fdt::FdtWriter::new_with_mem_reserv(&[vm_fdt::FdtReserveEntry::new(0x1000, 0x2000).unwrap()])
                .unwrap();
        let root = w.begin_node("").unwrap();
        w.property_string_list("compatible", vec!["a,b".into(), "c".into()]).unwrap();
        let a = w.begin_node("a@10").unwrap();
        w.property_array_u32("reg", &[0x10, 0x20]).unwrap();
        w.property_phandle(7).unwrap();
        let b = w.begin_node("b").unwrap();
        w.property_null("flag").unwrap();
        w.end_node(b).unwrap();
        w.end_node(a).unwrap();
        let c = w.begin_node("c").unwrap();
        w.property_u64("big", 0x1_0000_0002).unwrap();
        w.end_node(c).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn reads_back_what_vm_fdt_wrote() {
        let tree = parse(&sample()).unwrap();
        assert_eq!(tree.reserved, [MemoryRange::new(0x1000, 0x2000)]);
        let root = &tree.root;
        assert_eq!(root.strings("compatible").unwrap(), ["a,b", "c"]);
        assert_eq!(root.string("compatible"), None);
        assert_eq!(root.find("/a@10").unwrap().u32s("reg").unwrap(), [0x10, 0x20]);
        assert!(root.find("/a@10/b").unwrap().has("flag"));
        assert_eq!(root.find("c").unwrap().property("big").unwrap(), 0x1_0000_0002u64.to_be_bytes());
        assert!(root.find("/nope").is_none());
        let paths: Vec<String> = root.walk().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["/", "/a@10", "/a@10/b", "/c"]);
        assert_eq!(root.by_phandle(7).unwrap().0, "/a@10");
        assert!(root.by_phandle(8).is_none());
    }

    #[test]
    fn malformed_blobs_are_errors_not_panics() {
        let blob = sample();
        assert!(matches!(parse(&[]), Err(Error::Malformed { .. })));
        assert!(matches!(parse(&blob[..blob.len() - 1]), Err(Error::Malformed { .. })));
        let mut bad = blob.clone();
        bad[0] = 0;
        assert!(matches!(parse(&bad), Err(Error::Malformed { what: "bad magic", .. })));
        // Every truncation and every single-byte corruption either parses or is an error.
        for len in 0..blob.len() {
            let _ = parse(&blob[..len]);
        }
        for i in 0..blob.len() {
            let mut b = blob.clone();
            b[i] ^= 0xff;
            let _ = parse(&b);
        }
    }
}
