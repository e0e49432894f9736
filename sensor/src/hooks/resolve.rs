//! User side of `sensor-bpf/src/resolve.rs`: an argument's `resolve:` path (members
//! joined by dots, from the struct the argument points to, or from `btfType`) turned into
//! the kernel's steps with the running kernel's BTF. A pointer member is read (and the
//! path goes on in the struct it points to); an embedded struct only adds its offset; the
//! path ends at a pointer (the argument's value, e.g. a `file *` or `char *`), at memory
//! read in place (an embedded struct, a `char` array) or at a scalar (read, as int types).
use nightjar_common::{argsrc, plimits, ArgSpec, Resolve, RES_CURRENT_TASK};
use nightjar_event::config::ConfigError;

use crate::{
    btf::{Btf, Shape},
    policy::{
        args::{self, Class},
        compile::{ArgMeta, HookPlan},
        spec::ArgDecl,
        Loaded,
    },
};

/// Where a path ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// A pointer member: its value.
    Pointer,
    /// An embedded struct or an array: its address.
    Memory,
    /// An integer or enum member of this many bytes: its value.
    Scalar(u32),
}

impl Leaf {
    fn describe(self) -> String {
        match self {
            Leaf::Pointer => "a pointer".to_owned(),
            Leaf::Memory => "a struct or array (read in place)".to_owned(),
            Leaf::Scalar(n) => format!("a {n}-byte integer"),
        }
    }
}

/// The steps of `path` from a value of BTF type `start` (a pointer to a struct, or the
/// struct itself when `btfType` names it).
pub fn walk(btf: &Btf, start: u32, path: &str) -> Result<(Resolve, Leaf), String> {
    let pointee = |ty: u32| match btf.shape(ty) {
        Shape::Pointer(p) => match btf.shape(p) {
            Shape::Composite(c) => Some(c),
            _ => None,
        },
        Shape::Composite(c) => Some(c),
        _ => None,
    };
    let mut cur =
        pointee(start).ok_or_else(|| format!("the argument is {}, not a struct pointer", btf.type_name(start)))?;
    let mut r = Resolve { set: 1, ..Default::default() };
    let mut at = btf.type_name(cur);
    let (mut pending, mut leaf) = (0u32, Leaf::Memory);
    let segs: Vec<&str> = path.split('.').collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let (off, ty) = btf.member(cur, seg).ok_or_else(|| format!("{at} has no member {seg:?}"))?;
        at = format!("{at}.{seg}");
        pending += off;
        let deref = match btf.shape(ty) {
            Shape::Pointer(_) if last => {
                leaf = Leaf::Pointer;
                true
            }
            Shape::Pointer(_) => {
                cur = pointee(ty).ok_or_else(|| format!("{at} is {}, not a struct pointer", btf.type_name(ty)))?;
                true
            }
            Shape::Composite(c) => {
                cur = c;
                false
            }
            Shape::Array if last => false,
            Shape::Scalar(n) if last => {
                leaf = Leaf::Scalar(n);
                true
            }
            _ => return Err(format!("{at} is {}: the path cannot go on through it", btf.type_name(ty))),
        };
        if deref {
            step(&mut r, pending, true)?;
            pending = 0;
        }
    }
    if pending != 0 {
        step(&mut r, pending, false)?;
    }
    Ok((r, leaf))
}

fn step(r: &mut Resolve, off: u32, deref: bool) -> Result<(), String> {
    let k = r.n as usize;
    if k == plimits::RESOLVE_STEPS {
        return Err(format!("the path reads more than {} pointers", plimits::RESOLVE_STEPS));
    }
    r.offs[k] = off;
    r.deref |= u8::from(deref) << k;
    r.n += 1;
    Ok(())
}

/// Fills the `resolve:` paths of a hook's arguments (`out[j]` is `decls[j]`'s); `start`
/// gives an argument's BTF type on this hook.
pub fn args(
    l: &Loaded,
    base: &str,
    decls: &[ArgDecl],
    out: &mut [ArgSpec],
    start: impl Fn(&Btf, &ArgDecl) -> Option<u32>,
) -> Result<(), ConfigError> {
    for (j, (d, spec)) in decls.iter().zip(out.iter_mut()).enumerate() {
        let Some(path) = &d.resolve else { continue };
        let at = format!("{base}.args[{j}]");
        let btf = Btf::shared()
            .map_err(|e| l.error(&format!("{at}.resolve"), format!("resolve needs the kernel's BTF: {e}")))?;
        let ty = match &d.btf_type {
            Some(name) => btf.named_composite(name).map_err(|e| l.error(&format!("{at}.btfType"), e.to_string()))?,
            None => start(btf, d).ok_or_else(|| {
                l.error(&format!("{at}.resolve"), format!("the kernel's BTF does not type argument {} here", d.index))
            })?,
        };
        let (res, leaf) =
            walk(btf, ty, path).map_err(|e| l.error(&format!("{at}.resolve"), format!("{path:?}: {e}")))?;
        leaf_fits(l, &at, d, path, leaf)?;
        spec.res = res;
    }
    Ok(())
}

/// A hook's `data:` arguments (`source: current_task` with a `resolve:` path from the
/// task), after its arguments and return value, exported in the event's `data`.
pub fn data_args(l: &Loaded, base: &str, data: &[ArgDecl], p: &mut HookPlan) -> Result<(), ConfigError> {
    let n = p.conf.nargs as usize;
    if n + data.len() > plimits::ARGS {
        return Err(l.error(
            &format!("{base}.data"),
            format!("{} arguments and {} data arguments; at most {} in all", n, data.len(), plimits::ARGS),
        ));
    }
    let uses_slot = |s: &ArgSpec| s.src != argsrc::INT && s.src != argsrc::NONE;
    let mut slot = p.conf.args[..n].iter().filter(|s| uses_slot(s)).count() as u8;
    let btf =
        Btf::shared().map_err(|e| l.error(&format!("{base}.data"), format!("data needs the kernel's BTF: {e}")))?;
    let task = btf.named_composite("task_struct").map_err(|e| l.error(&format!("{base}.data"), e.to_string()))?;
    for (j, d) in data.iter().enumerate() {
        let at = format!("{base}.data[{j}]");
        // The validator checked source (current_task) and that there is a path.
        let path = d.resolve.as_deref().unwrap_or_default();
        let mut spec = crate::policy::backends::data_arg(l, &at, d, slot)?;
        if uses_slot(&spec) {
            slot += 1;
            if slot as usize > plimits::STR_SLOTS {
                return Err(l.error(&at, format!("more than {} string-like arguments in one hook", plimits::STR_SLOTS)));
            }
        }
        let (mut res, leaf) =
            walk(btf, task, path).map_err(|e| l.error(&format!("{at}.resolve"), format!("{path:?}: {e}")))?;
        leaf_fits(l, &at, d, path, leaf)?;
        res.base = RES_CURRENT_TASK;
        spec.res = res;
        p.conf.args[p.conf.nargs as usize] = spec;
        p.conf.nargs += 1;
        p.args.push(ArgMeta { index: d.index, ty: d.ty, label: d.label.clone(), ret: false, data: true });
    }
    Ok(())
}

/// The path's end suits the argument's type: int types a scalar, the others a pointer or
/// memory read in place.
fn leaf_fits(l: &Loaded, at: &str, d: &ArgDecl, path: &str, leaf: Leaf) -> Result<(), ConfigError> {
    let int = matches!(args::info(d.ty).class, Class::Int { .. });
    if int == matches!(leaf, Leaf::Scalar(_)) {
        return Ok(());
    }
    Err(l.error(
        &format!("{at}.resolve"),
        format!("{path:?} ends at {}, which type {} cannot read", leaf.describe(), d.ty.name()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths walked on the running kernel's BTF: pointers read, embedded structs added.
    #[test]
    fn paths_follow_pointers_and_add_embedded_offsets() {
        let btf = Btf::shared().expect("the kernel's BTF");
        let bprm = btf.raw_tp_param("sched_process_exec", 2).expect("btf_trace_sched_process_exec");
        assert_eq!(btf.type_name(bprm), "struct linux_binprm *");
        assert_eq!(
            btf.func_param("security_bprm_check", 0).map(|t| btf.type_name(t)),
            Some(bprm).map(|t| btf.type_name(t))
        );
        let (r, leaf) = walk(btf, bprm, "file.f_path.dentry.d_name.name").unwrap();
        assert_eq!((r.n, r.deref, r.set, leaf), (3, 0b111, 1, Leaf::Pointer));
        let off = |ty: &str, path: &[&str]| btf.offset(ty, path).unwrap();
        assert_eq!(r.offs[0], off("linux_binprm", &["file"]));
        assert_eq!(r.offs[1], off("file", &["f_path"]) + off("path", &["dentry"]));
        assert_eq!(r.offs[2], off("dentry", &["d_name", "name"]));
        let task = btf.raw_tp_param("sched_process_exec", 0).unwrap();
        let (r, leaf) = walk(btf, task, "tgid").unwrap();
        assert_eq!((r.n, r.deref, r.offs[0], leaf), (1, 1, off("task_struct", &["tgid"]), Leaf::Scalar(4)));
        // An embedded struct at the end is read in place (no step reads it).
        let (r, leaf) = walk(btf, bprm, "file.f_path").unwrap();
        assert_eq!((r.n, r.deref, leaf), (2, 0b01, Leaf::Memory));
        let e = walk(btf, bprm, "file.no_such").unwrap_err();
        assert!(e.contains("struct linux_binprm.file has no member \"no_such\""), "{e}");
        let e = walk(btf, task, "tgid.x").unwrap_err();
        assert!(e.contains("the path cannot go on through it"), "{e}");
    }
}
