//! The argument-type table: for each Tetragon argument type, how its value compares in
//! selectors (its class), which operators apply, the key Tetragon exports it under, and
//! whether nightjar reads it yet. The compiler (`compile`, `backends`), the validator and
//! the event side (`hooks/policy.rs`) all read this one table; a new type (the network
//! issue's `sock`, `skb`, `sockaddr`) is one more row plus its kernel reader.
use super::spec::{ArgOp, ArgType};

/// How a value is held in the kernel and compared by selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// An integer of `size` bytes (compared as u64 after sign extension).
    Int { size: u8, signed: bool },
    /// A string (compared through the LPM trie: Equal, Prefix, Postfix).
    Str,
    /// A path of a kernel object (file, path, dentry, linux_binprm, fd): compared as a string.
    Path,
    /// A byte buffer (char_buf, char_iovec): compared as a string over its first bytes.
    Bytes,
    /// A kernel struct read into fixed words (cred, bpf_attr, module, ...): not comparable.
    Struct,
    /// A socket or socket address (sock, socket, sockaddr), read into a fixed record
    /// (`nightjar_common::SockArg`, `SockaddrArg`; see `sensor-bpf/src/net.rs`).
    Net,
    /// Nothing is read (`nop`).
    Nothing,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct TypeInfo {
    pub class: Class,
    /// The `KprobeArgument` field Tetragon exports the value as (`int_arg`, `size_arg`, ...).
    pub export: &'static str,
    /// Not yet read by nightjar: the reason (the validator refuses the policy with it).
    pub unsupported: Option<&'static str>,
}

const fn row(class: Class, export: &'static str) -> TypeInfo {
    TypeInfo { class, export, unsupported: None }
}

const fn later(class: Class, export: &'static str, why: &'static str) -> TypeInfo {
    TypeInfo { class, export, unsupported: Some(why) }
}

pub fn info(ty: ArgType) -> TypeInfo {
    use ArgType as T;
    use Class::{Bytes, Int, Nothing, Path, Str, Struct};
    match ty {
        T::Int8 => row(Int { size: 1, signed: true }, "int_arg"),
        T::Uint8 => row(Int { size: 1, signed: false }, "uint_arg"),
        T::Int16 => row(Int { size: 2, signed: true }, "int_arg"),
        T::Uint16 => row(Int { size: 2, signed: false }, "uint_arg"),
        T::Int | T::Int32 => row(Int { size: 4, signed: true }, "int_arg"),
        T::Uint32 => row(Int { size: 4, signed: false }, "uint_arg"),
        T::Long | T::Int64 => row(Int { size: 8, signed: true }, "long_arg"),
        T::Uint64 | T::SizeT => row(Int { size: 8, signed: false }, "size_arg"),
        T::Capability => row(Int { size: 4, signed: true }, "capability_arg"),
        T::Syscall64 => row(Int { size: 8, signed: false }, "syscall_id"),
        T::KernelCapT => row(Int { size: 8, signed: false }, "kernel_cap_t_arg"),
        T::CapInheritable => row(Int { size: 8, signed: false }, "cap_inheritable_arg"),
        T::CapPermitted => row(Int { size: 8, signed: false }, "cap_permitted_arg"),
        T::CapEffective => row(Int { size: 8, signed: false }, "cap_effective_arg"),
        T::String | T::DataLoc => row(Str, "string_arg"),
        T::Filename => row(Str, "string_arg"),
        T::Fd | T::File | T::Kiocb => row(Path, "file_arg"),
        T::Path | T::Dentry => row(Path, "path_arg"),
        T::LinuxBinprm => row(Path, "linux_binprm_arg"),
        T::CharBuf | T::CharIovec | T::IovIter | T::ConstBuf => row(Bytes, "bytes_arg"),
        T::Cred => row(Struct, "process_credentials_arg"),
        T::UserNamespace => row(Struct, "user_ns_arg"),
        T::Module | T::LoadInfo => row(Struct, "module_arg"),
        T::BpfAttr => row(Struct, "bpf_attr_arg"),
        T::PerfEvent => row(Struct, "perf_event_arg"),
        T::BpfMap => row(Struct, "bpf_map_arg"),
        T::BpfProg => later(Struct, "bpf_prog_arg", "bpf_prog is not read yet"),
        T::Nop => row(Nothing, ""),
        T::Auto => later(Nothing, "", "type auto (take the type from BTF) is not read yet: name the type"),
        T::Sock => row(Class::Net, "sock_arg"),
        T::Skb => row(Class::Net, "skb_arg"),
        T::Sockaddr => row(Class::Net, "sockaddr_arg"),
        T::Socket => row(Class::Net, "sock_arg"),
        T::NetDevice => row(Str, "net_dev_arg"),
    }
}

/// Operators that apply to a class of values (the others are refused with the type named).
pub fn ops_for(class: Class) -> &'static [ArgOp] {
    use ArgOp as O;
    match class {
        Class::Int { .. } => &[O::Equal, O::NotEqual, O::In, O::NotIn, O::GT, O::LT, O::Mask, O::InMap, O::NotInMap],
        Class::Str | Class::Path | Class::Bytes => {
            &[O::Equal, O::NotEqual, O::Prefix, O::NotPrefix, O::Postfix, O::NotPostfix, O::In, O::NotIn]
        }
        Class::Net => super::net::ops(),
        Class::Struct | Class::Nothing => &[],
    }
}

/// Operators Tetragon has that nightjar does not evaluate yet (and why).
pub fn op_unsupported(op: ArgOp) -> Option<&'static str> {
    use ArgOp as O;
    match op {
        O::SPort
        | O::NotSPort
        | O::SPortPriv
        | O::NotSPortPriv
        | O::DPort
        | O::NotDPort
        | O::DPortPriv
        | O::NotDPortPriv
        | O::SAddr
        | O::NotSAddr
        | O::DAddr
        | O::NotDAddr
        | O::Protocol
        | O::Family
        | O::State => super::net::op_unsupported(),
        O::CapabilitiesGained => Some("CapabilitiesGained is not evaluated yet"),
        O::FileType | O::NotFileType => Some("file type filtering is not evaluated yet"),
        O::InRange | O::NotInRange => Some("range operators are not evaluated yet (use GT/LT or InMap with min:max)"),
        O::SubString | O::SubStringIgnCase => Some("substring matching is not evaluated yet"),
        O::SameFile | O::NotSameFile => Some("SameFile is not evaluated yet"),
        _ => None,
    }
}

/// True for values compared through the string trie.
pub fn is_stringy(ty: ArgType) -> bool {
    matches!(info(ty).class, Class::Str | Class::Path | Class::Bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_int_type_takes_int_operators() {
        for t in [ArgType::Int, ArgType::Uint8, ArgType::SizeT, ArgType::Syscall64] {
            assert!(ops_for(info(t).class).contains(&ArgOp::Mask), "{t:?}");
        }
        assert!(!ops_for(info(ArgType::File).class).contains(&ArgOp::GT));
        assert_eq!(info(ArgType::SizeT).export, "size_arg");
    }
}
