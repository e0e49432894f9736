//! Kprobes on a list (`call: "list:NAME"`, Tetragon's `lists:`) and the function names
//! Tetragon reports for syscall kprobes. A list becomes one kprobe per function, as
//! Tetragon attaches them; a syscall list longer than [`ONE_HOOK_OVER`] (a
//! `generated_syscalls` list: every syscall) becomes one `raw_syscalls:sys_enter` hook
//! whose selectors also match the syscall number against the list.
use std::borrow::Cow;

use super::{
    compile::{SYSCALLS, SYSCALL_SYMBOL_PREFIX},
    spec::*,
    Loaded,
};

/// A syscall list with more entries than this is served by one raw_syscalls hook.
pub const ONE_HOOK_OVER: usize = 8;

/// The argument index of the hidden syscall-number argument of a one-hook syscall list
/// (above any index a policy can give: a syscall has at most 6 arguments).
pub const NR_INDEX: u32 = 63;

/// How one `kprobes:` entry is planned.
pub enum Planned<'a> {
    /// One kprobe (the entry itself, or one function of its list).
    One(Cow<'a, KprobeSpec>),
    /// A long syscall list: one raw_syscalls:sys_enter hook for every syscall in it; the
    /// spec carries the hidden number argument and its InMap condition.
    Syscalls(KprobeSpec),
}

/// The list a `call: "list:NAME"` names.
pub fn named<'a>(l: &'a Loaded, call: &str) -> Option<&'a ListSpec> {
    let name = call.strip_prefix("list:")?;
    l.policy.spec.lists.iter().find(|x| x.name == name)
}

fn is_syscalls(list: &ListSpec) -> bool {
    matches!(list.ty, Some(ListType::Syscalls | ListType::GeneratedSyscalls))
}

/// The functions of a list, as kprobe calls (`sys_<name>` for every syscall of a
/// generated_syscalls list).
pub fn functions(list: &ListSpec) -> Vec<String> {
    match list.ty {
        Some(ListType::GeneratedSyscalls) => SYSCALLS.iter().map(|(n, _)| format!("sys_{n}")).collect(),
        // No pattern (refused by the validator) matches nothing, not every function.
        Some(ListType::GeneratedFtrace) => {
            list.pattern.as_deref().and_then(|p| ftrace_matches(p).ok()).map(|(f, _)| f).unwrap_or_default()
        }
        _ => {
            let mut out: Vec<String> = Vec::new();
            for v in &list.values {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            out
        }
    }
}

/// The functions of this kernel ftrace can trace (tracefs `available_filter_functions`,
/// names only, sorted, each once), read once; or why they cannot be read.
fn ftrace_functions() -> &'static Result<Vec<String>, String> {
    static FUNCS: std::sync::OnceLock<Result<Vec<String>, String>> = std::sync::OnceLock::new();
    FUNCS.get_or_init(|| {
        let mut why = String::new();
        for p in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
            let path = format!("{p}/available_filter_functions");
            match std::fs::read_to_string(&path) {
                Ok(t) => {
                    let mut v: Vec<String> =
                        t.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect();
                    v.sort_unstable();
                    v.dedup();
                    return Ok(v);
                }
                Err(e) if why.is_empty() => why = format!("{path}: {e}"),
                Err(_) => {}
            }
        }
        Err(why)
    })
}

/// A generated_ftrace list: the traceable functions whose name `pattern` (a regular
/// expression, unanchored as Tetragon's) matches, and how many functions there were; Err
/// says why there are none to match.
pub fn ftrace_matches(pattern: &str) -> Result<(Vec<String>, usize), String> {
    let re = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
    let all = ftrace_functions().as_ref().map_err(Clone::clone)?;
    Ok((all.iter().filter(|f| re.is_match(f)).cloned().collect(), all.len()))
}

/// Served by one raw_syscalls hook rather than one kprobe per function.
pub fn one_hook(list: &ListSpec) -> bool {
    is_syscalls(list) && (list.ty == Some(ListType::GeneratedSyscalls) || functions(list).len() > ONE_HOOK_OVER)
}

/// How many hooks a `kprobes:` entry takes.
pub fn hook_count(l: &Loaded, k: &KprobeSpec) -> usize {
    match named(l, &k.call) {
        Some(list) if one_hook(list) => 1,
        // Generated where the kernel's functions can be read; elsewhere planning refuses it.
        Some(list) if list.ty == Some(ListType::GeneratedFtrace) => functions(list).len().max(1),
        Some(list) => functions(list).len(),
        None => 1,
    }
}

/// The kprobes a `kprobes:` entry stands for.
pub fn expand<'a>(l: &'a Loaded, k: &'a KprobeSpec) -> Vec<Planned<'a>> {
    let Some(list) = named(l, &k.call) else {
        return vec![Planned::One(Cow::Borrowed(k))];
    };
    if one_hook(list) {
        return vec![Planned::Syscalls(with_number_condition(k, &list.name))];
    }
    functions(list)
        .into_iter()
        .map(|call| Planned::One(Cow::Owned(KprobeSpec { call, syscall: k.syscall || is_syscalls(list), ..k.clone() })))
        .collect()
}

/// `k` with the hidden syscall-number argument and, in every selector (or a selector of
/// its own when there are none), the condition that the number is in list `name`.
fn with_number_condition(k: &KprobeSpec, name: &str) -> KprobeSpec {
    let mut out = k.clone();
    out.syscall = true;
    out.args.push(ArgDecl { index: NR_INDEX, ty: ArgType::Syscall64, ..Default::default() });
    if out.selectors.is_empty() {
        out.selectors.push(SelectorSpec::default());
    }
    let cond = ArgSel { index: NR_INDEX, operator: ArgOp::InMap, values: vec![format!("list:{name}")], args: vec![] };
    for s in &mut out.selectors {
        s.match_args.push(cond.clone());
    }
    out
}

/// The `function_name` Tetragon reports for a kprobe: a syscall (`syscall: true`) named
/// `sys_<name>` by the policy is reported by its symbol, `__x64_sys_<name>`.
pub fn reported(k: &KprobeSpec) -> String {
    match k.call.strip_prefix("sys_") {
        Some(rest) if k.syscall => format!("{SYSCALL_SYMBOL_PREFIX}{rest}"),
        _ => k.call.clone(),
    }
}

/// The symbol Tetragon reports for syscall number `nr` (`__x64_sys_<name>`).
pub fn syscall_symbol(nr: u64) -> Option<String> {
    SYSCALLS.iter().find(|(_, n)| u64::from(*n) == nr).map(|(name, _)| format!("{SYSCALL_SYMBOL_PREFIX}{name}"))
}

/// The syscall numbers a policy's `enforcers[].calls` name (a syscall, `sys_X`,
/// `__x64_sys_X`, or `list:NAME` of a syscall list), each once; Err(path, value) at the
/// first entry that names none.
pub fn enforcer_nrs(l: &Loaded) -> Result<Vec<u32>, (String, String)> {
    let mut out = Vec::new();
    for (i, e) in l.policy.spec.enforcers.iter().enumerate() {
        for (j, call) in e.calls.iter().enumerate() {
            let bad = || (format!("spec.enforcers[{i}].calls[{j}]"), call.clone());
            match named(l, call) {
                Some(list) if list.ty == Some(ListType::GeneratedSyscalls) => {
                    out.extend(super::compile::syscall_numbers());
                }
                Some(list) if is_syscalls(list) => {
                    for v in &list.values {
                        out.push(super::selectors::list_syscall(v).ok_or_else(bad)?);
                    }
                }
                Some(_) => return Err(bad()),
                None if call.starts_with("list:") => return Err(bad()),
                None => out.push(super::selectors::list_syscall(call).ok_or_else(bad)?),
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(lists: &str, kprobe: &str) -> Loaded {
        let text = format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: t\nspec:\n  lists:\n{lists}  kprobes:\n{kprobe}"
        );
        super::super::parse("t.yaml", &text).unwrap()
    }

    #[test]
    fn short_lists_expand_to_one_kprobe_per_function() {
        let l = policy(
            "  - name: dups\n    type: syscalls\n    values: [sys_dup, sys_dup2, sys_dup]\n",
            "  - call: list:dups\n",
        );
        let calls: Vec<(String, bool)> = expand(&l, &l.policy.spec.kprobes[0])
            .into_iter()
            .map(|p| match p {
                Planned::One(k) => (reported(&k), k.syscall),
                Planned::Syscalls(_) => panic!("short list served by one hook"),
            })
            .collect();
        assert_eq!(calls, [("__x64_sys_dup".to_owned(), true), ("__x64_sys_dup2".to_owned(), true)]);
        assert_eq!(hook_count(&l, &l.policy.spec.kprobes[0]), 2);
    }

    #[test]
    fn generated_syscalls_are_one_hook_matching_the_number() {
        let l = policy("  - name: all\n    type: generated_syscalls\n", "  - call: list:all\n");
        assert_eq!(hook_count(&l, &l.policy.spec.kprobes[0]), 1);
        let mut planned = expand(&l, &l.policy.spec.kprobes[0]);
        assert_eq!(planned.len(), 1);
        let Some(Planned::Syscalls(k)) = planned.pop() else { panic!("not one hook") };
        assert_eq!(k.args.last().map(|a| (a.index, a.ty)), Some((NR_INDEX, ArgType::Syscall64)));
        assert_eq!(k.selectors.len(), 1);
        assert_eq!(k.selectors[0].match_args[0].values, ["list:all"]);
        assert_eq!(syscall_symbol(39).as_deref(), Some("__x64_sys_getpid"));
    }

    #[test]
    fn only_syscalls_named_sys_are_renamed() {
        let k = |call: &str, syscall| KprobeSpec { call: call.into(), syscall, ..Default::default() };
        assert_eq!(reported(&k("sys_write", true)), "__x64_sys_write");
        assert_eq!(reported(&k("__x64_sys_write", true)), "__x64_sys_write");
        assert_eq!(reported(&k("sys_write", false)), "sys_write");
        assert_eq!(reported(&k("security_file_open", false)), "security_file_open");
    }
}
