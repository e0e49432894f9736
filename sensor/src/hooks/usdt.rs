//! USDT probes (`usdts:` of a policy): finds a probe's sites in a binary's `.note.stapsdt`
//! (the notes `sys/sdt.h` writes: site address, semaphore, provider, name, and where each
//! argument is), and turns each argument's location into the `UsdtArg` the kernel side
//! (`sensor-bpf/src/usdt.rs`) reads. The events are `process_usdt`, built with every
//! other policy hook's (`policy.rs`).
use nightjar_common::{usdt_loc, UsdtArg, UsdtSpec};

/// One place in the binary where the probe fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// File offset of the probe's instruction (where the uprobe goes).
    pub offset: u64,
    /// Address of the probe's semaphore (0: none).
    pub semaphore: u64,
    /// The note's argument string, as written (`-4@%eax 8@-16(%rbp)`).
    pub arg_text: String,
    pub spec: UsdtSpec,
}

/// The sites of `provider:name` in the ELF file `path`.
pub fn find(path: &str, provider: &str, name: &str) -> Result<Vec<Site>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let elf = Elf::parse(&data).ok_or_else(|| format!("{path}: not a 64-bit little-endian ELF file"))?;
    let notes = elf.section(".note.stapsdt").ok_or_else(|| format!("{path}: has no USDT probes (no .note.stapsdt)"))?;
    let base_addr = elf.section(".stapsdt.base").map(|s| s.addr);
    let mut sites = Vec::new();
    let mut seen = Vec::new();
    for n in stapsdt_notes(elf.bytes(notes)) {
        seen.push(format!("{}:{}", n.provider, n.name));
        if n.provider != provider || n.name != name {
            continue;
        }
        // A prelinked binary moved its text: the note's base says by how much.
        let pc = match (base_addr, n.base) {
            (Some(actual), b) if b != 0 => n.pc.wrapping_add(actual.wrapping_sub(b)),
            _ => n.pc,
        };
        let offset = elf
            .file_offset(pc)
            .ok_or_else(|| format!("{path}: probe {provider}:{name} at {pc:#x} is in no loaded segment"))?;
        let spec = parse_args(&n.args).map_err(|e| format!("{path}: probe {provider}:{name}: argument {e}"))?;
        sites.push(Site { offset, semaphore: n.semaphore, arg_text: n.args, spec });
    }
    if sites.is_empty() {
        seen.sort();
        seen.dedup();
        return Err(format!("{path}: no USDT probe {provider}:{name} (it has: {})", seen.join(", ")));
    }
    Ok(sites)
}

/// Parses a note's argument string (`-4@%eax 8@-16(%rbp) 4@$7`, x86_64 AT&T syntax).
pub fn parse_args(text: &str) -> Result<UsdtSpec, String> {
    let mut spec = UsdtSpec::default();
    let parts: Vec<&str> = text.split_whitespace().collect();
    if parts.len() > spec.args.len() {
        return Err(format!("list {text:?}: {} arguments, nightjar reads at most {}", parts.len(), spec.args.len()));
    }
    for (i, p) in parts.iter().enumerate() {
        spec.args[i] = parse_arg(p).map_err(|e| format!("{i} ({p:?}): {e}"))?;
    }
    Ok(spec)
}

fn parse_arg(p: &str) -> Result<UsdtArg, String> {
    let (size, loc) = p.split_once('@').ok_or("expected SIZE@LOCATION")?;
    let n: i32 = size.parse().map_err(|_| format!("size {size:?} is not a number"))?;
    let width = n.unsigned_abs();
    if ![1, 2, 4, 8].contains(&width) {
        return Err(format!("size {n}: expected 1, 2, 4 or 8 bytes"));
    }
    let mut a = UsdtArg { size: width as u8, signed: u8::from(n < 0), ..Default::default() };
    if let Some(imm) = loc.strip_prefix('$') {
        a.kind = usdt_loc::CONST;
        a.off = parse_int(imm).ok_or_else(|| format!("constant {imm:?} is not a number"))?;
    } else if let Some(reg) = loc.strip_prefix('%') {
        a.kind = usdt_loc::REG;
        a.reg = reg_offset(reg).ok_or_else(|| format!("unknown register %{reg}"))?;
    } else if let Some((disp, rest)) = loc.split_once('(') {
        let reg = rest.strip_suffix(')').and_then(|r| r.strip_prefix('%')).ok_or("expected DISP(%REG)")?;
        if reg.contains(',') {
            return Err("indexed memory operands (base, index, scale) are not supported by nightjar".into());
        }
        a.kind = usdt_loc::DEREF;
        a.reg = reg_offset(reg).ok_or_else(|| format!("unknown register %{reg}"))?;
        a.off = if disp.is_empty() {
            0
        } else {
            parse_int(disp).ok_or_else(|| {
                format!(
                    "displacement {disp:?} is not a number (symbol-relative operands are not supported by nightjar)"
                )
            })?
        };
    } else {
        return Err("expected %REG, $CONSTANT or DISP(%REG)".into());
    }
    Ok(a)
}

fn parse_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let v = match digits.strip_prefix("0x") {
        Some(h) => i64::from_str_radix(h, 16).ok()?,
        None => digits.parse().ok()?,
    };
    Some(if neg { -v } else { v })
}

/// Byte offset in x86_64 `struct pt_regs` of a register (any width of it).
fn reg_offset(reg: &str) -> Option<u8> {
    const REGS: [(&[&str], u8); 18] = [
        (&["r15", "r15d", "r15w", "r15b"], 0),
        (&["r14", "r14d", "r14w", "r14b"], 8),
        (&["r13", "r13d", "r13w", "r13b"], 16),
        (&["r12", "r12d", "r12w", "r12b"], 24),
        (&["rbp", "ebp", "bp", "bpl"], 32),
        (&["rbx", "ebx", "bx", "bl", "bh"], 40),
        (&["r11", "r11d", "r11w", "r11b"], 48),
        (&["r10", "r10d", "r10w", "r10b"], 56),
        (&["r9", "r9d", "r9w", "r9b"], 64),
        (&["r8", "r8d", "r8w", "r8b"], 72),
        (&["rax", "eax", "ax", "al"], 80),
        (&["rcx", "ecx", "cx", "cl"], 88),
        (&["rdx", "edx", "dx", "dl"], 96),
        (&["rsi", "esi", "si", "sil"], 104),
        (&["rdi", "edi", "di", "dil"], 112),
        (&["rip", "eip"], 128),
        (&["rsp", "esp", "sp", "spl"], 152),
        (&["orig_rax"], 120),
    ];
    REGS.iter().find(|(names, _)| names.contains(&reg)).map(|(_, o)| *o)
}

struct Note {
    pc: u64,
    base: u64,
    semaphore: u64,
    provider: String,
    name: String,
    args: String,
}

/// The `stapsdt` notes (type 3) of a `.note.stapsdt` section's bytes.
fn stapsdt_notes(mut b: &[u8]) -> Vec<Note> {
    let align4 = |n: usize| (n + 3) & !3;
    let mut out = Vec::new();
    while b.len() >= 12 {
        let namesz = u32le(b, 0) as usize;
        let descsz = u32le(b, 4) as usize;
        let ty = u32le(b, 8);
        let name_end = 12 + align4(namesz);
        let desc_end = name_end + align4(descsz);
        if desc_end > b.len() {
            break;
        }
        if ty == 3 && &b[12..12 + namesz] == b"stapsdt\0" && descsz >= 24 {
            let d = &b[name_end..name_end + descsz];
            let mut strs = d[24..].split(|&c| c == 0).map(|s| String::from_utf8_lossy(s).into_owned());
            out.push(Note {
                pc: u64le(d, 0),
                base: u64le(d, 8),
                semaphore: u64le(d, 16),
                provider: strs.next().unwrap_or_default(),
                name: strs.next().unwrap_or_default(),
                args: strs.next().unwrap_or_default(),
            });
        }
        b = &b[desc_end..];
    }
    out
}

fn u16le(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32le(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
}

fn u64le(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
}

#[derive(Clone, Copy)]
struct Section {
    addr: u64,
    offset: u64,
    size: u64,
}

/// Just enough of an ELF64 little-endian file: named sections and loaded segments.
struct Elf<'a> {
    data: &'a [u8],
    sections: Vec<(String, Section)>,
    /// PT_LOAD segments: (vaddr, file offset, file size).
    loads: Vec<(u64, u64, u64)>,
}

impl<'a> Elf<'a> {
    fn parse(data: &'a [u8]) -> Option<Elf<'a>> {
        if data.get(..4)? != b"\x7fELF" || *data.get(4)? != 2 || *data.get(5)? != 1 {
            return None;
        }
        let (phoff, phentsize, phnum) =
            (u64le(data, 0x20) as usize, u16le(data, 0x36) as usize, u16le(data, 0x38) as usize);
        let (shoff, shentsize, shnum) =
            (u64le(data, 0x28) as usize, u16le(data, 0x3a) as usize, u16le(data, 0x3c) as usize);
        let shstrndx = u16le(data, 0x3e) as usize;
        let sh = |i: usize| {
            let at = shoff + i * shentsize;
            let s = Section { addr: u64le(data, at + 16), offset: u64le(data, at + 24), size: u64le(data, at + 32) };
            (u32le(data, at) as usize, s)
        };
        let strtab = sh(shstrndx).1;
        let name_of = |off: usize| {
            let start = strtab.offset as usize + off;
            let rest = data.get(start..)?;
            let end = rest.iter().position(|&c| c == 0)?;
            Some(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        let sections = (0..shnum)
            .filter_map(|i| {
                let (n, s) = sh(i);
                Some((name_of(n)?, s))
            })
            .collect();
        let loads = (0..phnum)
            .map(|i| phoff + i * phentsize)
            .filter(|&at| u32le(data, at) == 1)
            .map(|at| (u64le(data, at + 16), u64le(data, at + 8), u64le(data, at + 32)))
            .collect();
        Some(Elf { data, sections, loads })
    }

    fn section(&self, name: &str) -> Option<Section> {
        self.sections.iter().find(|(n, _)| n == name).map(|(_, s)| *s)
    }

    fn bytes(&self, s: Section) -> &'a [u8] {
        let start = (s.offset as usize).min(self.data.len());
        let end = (s.offset.saturating_add(s.size) as usize).min(self.data.len());
        &self.data[start..end]
    }

    fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.loads.iter().find(|(va, _, sz)| vaddr >= *va && vaddr < va + sz).map(|(va, off, _)| vaddr - va + off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_locations_parse_as_sdt_writes_them() {
        let s = parse_args("-4@%eax 8@-16(%rbp) 4@$7 2@(%rdi) -8@0x10(%r12)").unwrap();
        let a = &s.args;
        assert_eq!((a[0].kind, a[0].size, a[0].signed, a[0].reg), (usdt_loc::REG, 4, 1, 80));
        assert_eq!((a[1].kind, a[1].size, a[1].signed, a[1].reg, a[1].off), (usdt_loc::DEREF, 8, 0, 32, -16));
        assert_eq!((a[2].kind, a[2].off), (usdt_loc::CONST, 7));
        assert_eq!((a[3].kind, a[3].reg, a[3].off), (usdt_loc::DEREF, 112, 0));
        assert_eq!((a[4].kind, a[4].signed, a[4].reg, a[4].off), (usdt_loc::DEREF, 1, 24, 16));
        assert_eq!(a[5].kind, usdt_loc::NONE);
    }

    #[test]
    fn unreadable_locations_are_refused_with_the_reason() {
        assert!(parse_args("3@%eax").unwrap_err().contains("expected 1, 2, 4 or 8"));
        assert!(parse_args("8@%xmm0").unwrap_err().contains("unknown register %xmm0"));
        assert!(parse_args("8@(%rax,%rbx,8)").unwrap_err().contains("indexed memory operands"));
        assert!(parse_args("8@foo(%rip)").unwrap_err().contains("symbol-relative"));
        assert!(parse_args("1@%al 1@%al 1@%al 1@%al 1@%al 1@%al 1@%al").unwrap_err().contains("at most 6"));
    }

    #[test]
    fn notes_are_read_past_their_padding() {
        let mut sec = Vec::new();
        for (prov, name, args) in [("p", "one", "8@%rdi"), ("prov", "two", "-4@%esi 8@%rdx")] {
            let mut desc = Vec::new();
            desc.extend_from_slice(&0x1234u64.to_le_bytes());
            desc.extend_from_slice(&0u64.to_le_bytes());
            desc.extend_from_slice(&0x99u64.to_le_bytes());
            for s in [prov, name, args] {
                desc.extend_from_slice(s.as_bytes());
                desc.push(0);
            }
            sec.extend_from_slice(&8u32.to_le_bytes());
            sec.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            sec.extend_from_slice(&3u32.to_le_bytes());
            sec.extend_from_slice(b"stapsdt\0");
            let pad = (4 - desc.len() % 4) % 4;
            sec.extend_from_slice(&desc);
            sec.extend(std::iter::repeat_n(0, pad));
        }
        let n = stapsdt_notes(&sec);
        assert_eq!(n.len(), 2);
        assert_eq!((n[1].provider.as_str(), n[1].name.as_str(), n[1].args.as_str()), ("prov", "two", "-4@%esi 8@%rdx"));
        assert_eq!((n[0].pc, n[0].semaphore), (0x1234, 0x99));
    }
}
