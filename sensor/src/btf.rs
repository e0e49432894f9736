//! A small, bounds-checked reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): enough to
//! find struct member offsets and sizes, which the eBPF programs need to read kernel structs
//! on whatever kernel they run (see `offsets.rs`).
use std::collections::HashMap;

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("cannot read BTF: {0}")]
    Read(String),
    #[error("not BTF (bad magic or header)")]
    BadHeader,
    #[error("BTF truncated at byte {0}")]
    Truncated(usize),
    #[error("unknown BTF kind {kind} at type {id}")]
    UnknownKind { id: u32, kind: u32 },
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {ty} has no member {member}")]
    NoMember { ty: String, member: String },
    #[error("kernel BTF: {0} is not a struct or union")]
    NotComposite(String),
}

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    ty: u32,
    /// Bit offset within the parent.
    bit_offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: u32,
    /// Size (struct/union/int/enum) or referenced type (ptr/typedef/const/...).
    size_or_type: u32,
    members: Vec<Member>,
}

/// What a type is, for walking a path of members ([`Btf::shape`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A pointer to this type.
    Pointer(u32),
    /// A struct or union (its id).
    Composite(u32),
    Array,
    /// An integer or enum of this many bytes.
    Scalar(u32),
    Other(u32),
}

/// Parsed BTF: types and the string section.
pub struct Btf {
    types: Vec<Type>, // index = type id; id 0 is void
    strings: Vec<u8>,
    by_name: HashMap<String, Vec<u32>>,
}

fn rd_u32(b: &[u8], at: usize) -> Result<u32, BtfError> {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map(u32::from_le_bytes).ok_or(BtfError::Truncated(at))
}

impl Btf {
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux").map_err(|e| BtfError::Read(e.to_string()))?;
        Self::parse(&data)
    }

    /// The running kernel's BTF, parsed on first use and kept (for `resolve:` paths).
    pub fn shared() -> Result<&'static Btf, &'static BtfError> {
        static BTF: std::sync::OnceLock<Result<Btf, BtfError>> = std::sync::OnceLock::new();
        BTF.get_or_init(Btf::from_sys_fs).as_ref()
    }

    pub fn parse(b: &[u8]) -> Result<Self, BtfError> {
        if b.len() < 24 || u16::from_le_bytes([b[0], b[1]]) != MAGIC {
            return Err(BtfError::BadHeader);
        }
        let hdr_len = rd_u32(b, 4)? as usize;
        let type_off = rd_u32(b, 8)? as usize;
        let type_len = rd_u32(b, 12)? as usize;
        let str_off = rd_u32(b, 16)? as usize;
        let str_len = rd_u32(b, 20)? as usize;
        let tstart = hdr_len.checked_add(type_off).ok_or(BtfError::BadHeader)?;
        let tend = tstart.checked_add(type_len).ok_or(BtfError::BadHeader)?;
        let sstart = hdr_len.checked_add(str_off).ok_or(BtfError::BadHeader)?;
        let send = sstart.checked_add(str_len).ok_or(BtfError::BadHeader)?;
        let tsec = b.get(tstart..tend).ok_or(BtfError::Truncated(tend))?;
        let strings = b.get(sstart..send).ok_or(BtfError::Truncated(send))?.to_vec();

        let mut types = vec![Type { name: 0, kind: 0, size_or_type: 0, members: Vec::new() }];
        let mut at = 0usize;
        while at < tsec.len() {
            let id = types.len() as u32;
            let name = rd_u32(tsec, at)?;
            let info = rd_u32(tsec, at + 4)?;
            let size_or_type = rd_u32(tsec, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_FUNC
                | KIND_FLOAT | KIND_TYPE_TAG => 0,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let off = rd_u32(tsec, m + 8)?;
                        members.push(Member {
                            name: rd_u32(tsec, m)?,
                            ty: rd_u32(tsec, m + 4)?,
                            bit_offset: if kind_flag { off & 0x00ff_ffff } else { off },
                        });
                    }
                    vlen * 12
                }
                // Enumerators as members: the value (its low 32 bits) in `bit_offset`.
                KIND_ENUM | KIND_ENUM64 => {
                    let w = if kind == KIND_ENUM { 8 } else { 12 };
                    for i in 0..vlen {
                        let m = at + i * w;
                        members.push(Member { name: rd_u32(tsec, m)?, ty: 0, bit_offset: rd_u32(tsec, m + 4)? });
                    }
                    vlen * w
                }
                // Parameters as members (name, type; no offset).
                KIND_FUNC_PROTO => {
                    for i in 0..vlen {
                        let m = at + i * 8;
                        members.push(Member { name: rd_u32(tsec, m)?, ty: rd_u32(tsec, m + 4)?, bit_offset: 0 });
                    }
                    vlen * 8
                }
                KIND_DATASEC => vlen * 12,
                k => return Err(BtfError::UnknownKind { id, kind: k }),
            };
            if at + extra > tsec.len() {
                return Err(BtfError::Truncated(tstart + at));
            }
            // For arrays keep the element type and count: (type, nelems) in members[0].
            if kind == KIND_ARRAY {
                members.push(Member { name: 0, ty: rd_u32(tsec, at)?, bit_offset: rd_u32(tsec, at + 8)? });
            }
            at += extra;
            types.push(Type { name, kind, size_or_type, members });
        }
        let mut btf = Btf { types, strings, by_name: HashMap::new() };
        for id in 1..btf.types.len() as u32 {
            let t = &btf.types[id as usize];
            if matches!(t.kind, KIND_STRUCT | KIND_UNION) && t.name != 0 {
                let n = btf.str(t.name).to_owned();
                btf.by_name.entry(n).or_default().push(id);
            }
        }
        Ok(btf)
    }

    /// The names of the functions (BTF FUNC entries) among `names`.
    pub fn funcs_among<'a>(&self, names: impl Iterator<Item = &'a String>) -> std::collections::HashSet<String> {
        let wanted: std::collections::HashSet<&str> = names.map(String::as_str).collect();
        self.types
            .iter()
            .filter(|t| t.kind == KIND_FUNC)
            .map(|t| self.str(t.name))
            .filter(|n| wanted.contains(n))
            .map(str::to_owned)
            .collect()
    }

    fn str(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        let end = s.iter().position(|c| *c == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// Follows typedef/const/volatile/restrict/type_tag to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(t.kind, KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG) =>
                {
                    id = t.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    /// What type `id` is, through typedefs and qualifiers.
    pub fn shape(&self, id: u32) -> Shape {
        let id = self.resolve(id);
        let Some(t) = self.types.get(id as usize) else { return Shape::Other(id) };
        match t.kind {
            KIND_PTR => Shape::Pointer(t.size_or_type),
            KIND_STRUCT | KIND_UNION => Shape::Composite(id),
            KIND_ARRAY => Shape::Array,
            KIND_INT | KIND_ENUM | KIND_ENUM64 => Shape::Scalar(t.size_or_type),
            _ => Shape::Other(id),
        }
    }

    /// A readable name of type `id` (`struct file`, `int`, `char *`).
    pub fn type_name(&self, id: u32) -> String {
        let r = self.resolve(id);
        let Some(t) = self.types.get(r as usize) else { return format!("type {id}") };
        let name = self.str(t.name);
        match t.kind {
            KIND_PTR => format!("{} *", self.type_name(t.size_or_type)),
            KIND_STRUCT => format!("struct {name}"),
            KIND_UNION => format!("union {name}"),
            KIND_ARRAY => "an array".to_owned(),
            _ if name.is_empty() => format!("type {r}"),
            _ => name.to_owned(),
        }
    }

    /// Member `name` of composite `id` (anonymous members searched too): (byte offset,
    /// type), or None (also for a bitfield).
    pub fn member(&self, id: u32, name: &str) -> Option<(u32, u32)> {
        let (bits, ty) = self.find_member(id, name, 0)?;
        (bits % 8 == 0).then_some((bits / 8, ty))
    }

    /// The type of parameter `index` of kernel function `func`.
    pub fn func_param(&self, func: &str, index: usize) -> Option<u32> {
        let f = self.func_id(func)?;
        let proto = self.types.get(self.types[f as usize].size_or_type as usize)?;
        (proto.kind == KIND_FUNC_PROTO).then(|| proto.members.get(index).map(|m| m.ty)).flatten()
    }

    /// The type of `TP_PROTO` argument `index` of raw tracepoint `event` (its
    /// `btf_trace_<event>` typedef: a pointer to a prototype whose first parameter is the
    /// probe's data).
    pub fn raw_tp_param(&self, event: &str, index: usize) -> Option<u32> {
        let want = format!("btf_trace_{event}");
        let td = (1..self.types.len()).find(|i| {
            let t = &self.types[*i];
            t.kind == KIND_TYPEDEF && self.str(t.name) == want
        })?;
        let Shape::Pointer(p) = self.shape(td as u32) else { return None };
        let proto = self.types.get(self.resolve(p) as usize)?;
        (proto.kind == KIND_FUNC_PROTO).then(|| proto.members.get(index + 1).map(|m| m.ty)).flatten()
    }

    /// A struct or union by name (`struct file`, `file`).
    pub fn named_composite(&self, name: &str) -> Result<u32, BtfError> {
        let bare = name.strip_prefix("struct ").or_else(|| name.strip_prefix("union ")).unwrap_or(name);
        self.struct_id(bare.trim())
    }

    fn struct_id(&self, name: &str) -> Result<u32, BtfError> {
        self.by_name
            .get(name)
            .and_then(|ids| ids.iter().copied().find(|id| !self.types[*id as usize].members.is_empty()))
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))
    }

    /// Type id of the kernel function `name` (a BTF `FUNC`), the attach target of fentry
    /// and BPF-LSM programs.
    pub fn func_id(&self, name: &str) -> Option<u32> {
        (1..self.types.len() as u32).find(|id| {
            let t = &self.types[*id as usize];
            t.kind == KIND_FUNC && self.str(t.name) == name
        })
    }

    /// The value of enumerator `value` of `enum name` (its low 32 bits).
    pub fn enum_value(&self, name: &str, value: &str) -> Option<u32> {
        self.types
            .iter()
            .filter(|t| matches!(t.kind, KIND_ENUM | KIND_ENUM64) && self.str(t.name) == name)
            .flat_map(|t| &t.members)
            .find(|m| self.str(m.name) == value)
            .map(|m| m.bit_offset)
    }

    /// Size in bytes of a named struct.
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        Ok(self.types[self.struct_id(name)? as usize].size_or_type)
    }

    /// Finds `member` in composite `id`, descending into anonymous struct/union members.
    /// Returns (bit offset, member type id).
    fn find_member(&self, id: u32, member: &str, depth: u32) -> Option<(u32, u32)> {
        let t = self.types.get(id as usize)?;
        if depth > 8 || !matches!(t.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for m in &t.members {
            if m.name != 0 {
                if self.str(m.name) == member {
                    return Some((m.bit_offset, m.ty));
                }
            } else if let Some((off, ty)) = self.find_member(self.resolve(m.ty), member, depth + 1) {
                return Some((m.bit_offset + off, ty));
            }
        }
        None
    }

    /// Byte offset of `path` (members of embedded structs, e.g. `["d_name", "name"]`) in
    /// struct `ty`.
    pub fn offset(&self, ty: &str, path: &[&str]) -> Result<u32, BtfError> {
        let mut id = self.struct_id(ty)?;
        let mut bits = 0u32;
        let mut where_ = ty.to_owned();
        for (i, seg) in path.iter().enumerate() {
            let (off, mty) = self
                .find_member(id, seg, 0)
                .ok_or_else(|| BtfError::NoMember { ty: where_.clone(), member: (*seg).to_owned() })?;
            bits += off;
            where_ = format!("{where_}.{seg}");
            if i + 1 < path.len() {
                id = self.resolve(mty);
                let k = self.types.get(id as usize).map(|t| t.kind).unwrap_or(0);
                if !matches!(k, KIND_STRUCT | KIND_UNION) {
                    return Err(BtfError::NotComposite(where_));
                }
            }
        }
        Ok(bits / 8)
    }

    /// Like [`Btf::offset`], trying each alternative member name in turn (for renames
    /// across kernel versions, e.g. `kernfs_node.parent` → `__parent`).
    pub fn offset_any(&self, ty: &str, alternatives: &[&[&str]]) -> Result<u32, BtfError> {
        let mut last = BtfError::NoStruct(ty.to_owned());
        for path in alternatives {
            match self.offset(ty, path) {
                Ok(o) => return Ok(o),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(Btf::parse(b"").err(), Some(BtfError::BadHeader));
        let mut b = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(Btf::parse(&b), Err(BtfError::Truncated(_))));
        b.truncate(10);
        assert_eq!(Btf::parse(&b).err(), Some(BtfError::BadHeader));
    }

    #[test]
    fn running_kernel_has_the_fields_the_sensor_reads() {
        let Ok(btf) = Btf::from_sys_fs() else {
            panic!("/sys/kernel/btf/vmlinux is required by nightjar (kernel built with CONFIG_DEBUG_INFO_BTF)");
        };
        let o = btf.offset("task_struct", &["pid"]).unwrap();
        let t = btf.offset("task_struct", &["tgid"]).unwrap();
        assert_eq!(t, o + 4, "tgid follows pid in task_struct");
        // mm_struct keeps most fields inside an anonymous struct.
        assert!(btf.offset("mm_struct", &["arg_start"]).unwrap() > 0);
        assert_eq!(btf.offset("dentry", &["d_name", "name"]).unwrap(), btf.offset("dentry", &["d_name"]).unwrap() + 8);
        assert!(btf.struct_size("upid").unwrap() >= 12);
        // Enumerators: the pid types are in a fixed order since 4.19.
        assert_eq!(btf.enum_value("pid_type", "PIDTYPE_PID"), Some(0));
        assert_eq!(btf.enum_value("pid_type", "PIDTYPE_TGID"), Some(1));
        assert_eq!(btf.enum_value("pid_type", "NIGHTJAR_NO_SUCH"), None);
        assert!(btf.enum_value("iter_type", "ITER_UBUF").is_some(), "ITER_UBUF exists since 6.0");
        assert!(matches!(btf.offset("task_struct", &["no_such_field"]), Err(BtfError::NoMember { .. })));
    }
}
