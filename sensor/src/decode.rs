//! Bounds-checked decoding of ring-buffer records. Any byte sequence gives either a record
//! or a [`DecodeError`]; nothing here can panic (see the property test and the fuzz target).
use nightjar_common::{kind, ArgHeader, ExecRecord, ExitRecord, ForkRecord, PolicyRecord, RecordHeader};

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Exec(Box<Exec>),
    Exit(ExitRecord),
    Fork(ForkRecord),
    Policy(Box<Policy>),
}

/// A policy hook fired: which hook, what it did, and the captured arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub fixed: PolicyRecord,
    pub args: Vec<PolicyArg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyArg {
    pub src: u8,
    pub truncated: bool,
    pub data: Vec<u8>,
}

/// An exec record with its variable data split out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub fixed: ExecRecord,
    /// Path components, leaf first, as the kernel walker wrote them.
    pub path: Vec<Vec<u8>>,
    /// argv, NUL-separated, possibly truncated.
    pub args: Vec<u8>,
    pub cwd: Vec<Vec<u8>>,
    pub cgroup: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need}-byte {what}")]
    Short { what: &'static str, len: usize, need: usize },
    #[error("record header says {declared} bytes but {len} arrived")]
    SizeMismatch { declared: u32, len: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("exec record declares {declared} bytes of strings but carries {len}")]
    StringsOverflow { declared: usize, len: usize },
}

/// Reads a `#[repr(C)]` plain-old-data record from the front of `buf`.
fn read_pod<T: Copy + Default>(buf: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let need = std::mem::size_of::<T>();
    if buf.len() < need {
        return Err(DecodeError::Short { what, len: buf.len(), need });
    }
    // SAFETY: length checked above; T is one of the nightjar_common repr(C) records whose
    // fields are integers and byte arrays (every bit pattern is valid); read_unaligned
    // because ring-buffer data is only 8-byte aligned.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

/// Decodes one ring-buffer record.
pub fn decode(buf: &[u8]) -> Result<Record, DecodeError> {
    let hdr: RecordHeader = read_pod(buf, "record header")?;
    if (hdr.size as usize) > buf.len() {
        return Err(DecodeError::SizeMismatch { declared: hdr.size, len: buf.len() });
    }
    let buf = &buf[..(hdr.size as usize).max(std::mem::size_of::<RecordHeader>())];
    match hdr.kind {
        kind::EXEC => decode_exec(buf).map(|e| Record::Exec(Box::new(e))),
        kind::EXIT => read_pod(buf, "exit record").map(Record::Exit),
        kind::FORK => read_pod(buf, "fork record").map(Record::Fork),
        kind::POLICY => decode_policy(buf).map(|p| Record::Policy(Box::new(p))),
        k => Err(DecodeError::UnknownKind(k)),
    }
}

fn decode_exec(buf: &[u8]) -> Result<Exec, DecodeError> {
    let fixed: ExecRecord = read_pod(buf, "exec record")?;
    let rest = &buf[std::mem::size_of::<ExecRecord>()..];
    let lens = [fixed.path_len, fixed.args_len, fixed.cwd_len, fixed.cgroup_len].map(usize::from);
    let declared: usize = lens.iter().sum();
    if declared > rest.len() {
        return Err(DecodeError::StringsOverflow { declared, len: rest.len() });
    }
    let (path, rest) = rest.split_at(lens[0]);
    let (args, rest) = rest.split_at(lens[1]);
    let (cwd, rest) = rest.split_at(lens[2]);
    let cgroup = &rest[..lens[3]];
    Ok(Exec { fixed, path: components(path), args: args.to_vec(), cwd: components(cwd), cgroup: components(cgroup) })
}

fn decode_policy(buf: &[u8]) -> Result<Policy, DecodeError> {
    let fixed: PolicyRecord = read_pod(buf, "policy record")?;
    let mut rest = &buf[std::mem::size_of::<PolicyRecord>()..];
    let mut args = Vec::with_capacity(fixed.nargs as usize);
    for _ in 0..fixed.nargs.min(nightjar_common::plimits::ARGS as u8) {
        let h: ArgHeader = read_pod(rest, "policy argument header")?;
        rest = &rest[std::mem::size_of::<ArgHeader>()..];
        let len = h.len as usize;
        if len > rest.len() {
            return Err(DecodeError::StringsOverflow { declared: len, len: rest.len() });
        }
        args.push(PolicyArg { src: h.src, truncated: h.truncated != 0, data: rest[..len].to_vec() });
        rest = &rest[len..];
    }
    Ok(Policy { fixed, args })
}

/// Splits NUL-terminated components; a missing final NUL ends the last component.
fn components(b: &[u8]) -> Vec<Vec<u8>> {
    b.split(|c| *c == 0).filter(|c| !c.is_empty()).map(<[u8]>::to_vec).collect()
}

/// Joins leaf-first components into an absolute path (`["echo","bin"]` → `/bin/echo`).
pub fn join_leaf_first(components: &[Vec<u8>]) -> String {
    if components.is_empty() {
        return String::new();
    }
    let mut s = String::new();
    for c in components.iter().rev() {
        if c.as_slice() == b"/" {
            continue;
        }
        s.push('/');
        s.push_str(&String::from_utf8_lossy(c));
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// A fixed-size C string field as text (up to the first NUL).
pub fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is a repr(C) record; we only read its bytes.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }.to_vec()
    }

    fn exec_record(path: &[u8], args: &[u8], cwd: &[u8], cg: &[u8]) -> Vec<u8> {
        let mut r = ExecRecord::default();
        r.hdr.kind = kind::EXEC;
        r.pid = 42;
        r.path_len = path.len() as u16;
        r.args_len = args.len() as u16;
        r.cwd_len = cwd.len() as u16;
        r.cgroup_len = cg.len() as u16;
        r.hdr.size = (std::mem::size_of::<ExecRecord>() + path.len() + args.len() + cwd.len() + cg.len()) as u32;
        let mut b = bytes_of(&r);
        for part in [path, args, cwd, cg] {
            b.extend_from_slice(part);
        }
        b
    }

    #[test]
    fn exec_round_trip() {
        let b = exec_record(b"echo\0bin\0", b"/bin/echo\0a\0b\0", b"tmp\0", b"x.scope\0kubepods\0");
        let Record::Exec(e) = decode(&b).unwrap() else { panic!("not exec") };
        assert_eq!(e.fixed.pid, 42);
        assert_eq!(join_leaf_first(&e.path), "/bin/echo");
        assert_eq!(join_leaf_first(&e.cwd), "/tmp");
        assert_eq!(join_leaf_first(&e.cgroup), "/kubepods/x.scope");
        assert_eq!(e.args, b"/bin/echo\0a\0b\0");
    }

    #[test]
    fn overflowing_lengths_are_errors() {
        let mut b = exec_record(b"echo\0", b"", b"", b"");
        b.truncate(b.len() - 2);
        // header size now exceeds the buffer
        assert!(matches!(decode(&b), Err(DecodeError::SizeMismatch { .. })));
    }

    #[test]
    fn root_path() {
        assert_eq!(join_leaf_first(&[b"/".to_vec()]), "/");
        assert_eq!(join_leaf_first(&[]), "");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&b);
        }

        #[test]
        fn truncated_and_corrupted_records_never_panic(
            cut in 0usize..400, flip in 0usize..400, val in any::<u8>(),
            path in proptest::collection::vec(any::<u8>(), 0..64),
            args in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut b = exec_record(&path, &args, b"tmp\0", b"");
            if flip < b.len() { b[flip] = val; }
            let cut = cut.min(b.len());
            let _ = decode(&b[..cut]);
            let _ = decode(&b);
        }
    }
}
