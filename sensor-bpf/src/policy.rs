//! The policy engine, kernel side: TracingPolicy selectors compiled by user space into
//! maps, evaluated here so non-matching events never reach the ring buffer.
//!
//! One program (`policy_tp`) serves every tracepoint a policy needs (syscalls:sys_enter_*,
//! sys_exit_open*, ...): it finds the hooks of the tracepoint by the record's event id,
//! captures their arguments, evaluates their selectors and acts (Post, Sigkill, Signal).
//! `exec_policy` does the same for exec hooks and keeps each process's matchBinaries mask.
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated as gen},
    macros::{map, tracepoint},
    maps::{
        lpm_trie::{Key, LpmTrie},
        Array, HashMap, LruHashMap, PerCpuArray,
    },
    programs::TracePointContext,
    EbpfContext,
};
use nightjar_common::{
    action, argsrc, cause, kind, ns, op, plimits, ArgHeader, BinSet, HookConfig, HookList, PolicyRecord, ProcState,
    RecordHeader, Selector, StrData, EXEC_HOOKS_KEY, STACK_KERNEL, STACK_USER,
};

use crate::{
    kread::{off, rd, rd_ptr},
    maps::{count_missed, now, wake_flags, EVENTS, SCRATCH, SCRATCH_MASK},
};

/// Hooks per tracepoint, keyed by the tracepoint's event id (or EXEC_HOOKS_KEY).
#[map]
pub static HOOK_LISTS: HashMap<u32, HookList> = HashMap::with_max_entries(8192, 0);

#[map]
pub static HOOK_CONF: Array<HookConfig> = Array::with_max_entries(plimits::HOOKS, 0);

/// String conditions: key (cond, string) → cond.
#[map]
pub static STRINGS: LpmTrie<StrData, u32> = LpmTrie::with_max_entries(8192, 0);

/// matchBinaries sets, by bit.
#[map]
pub static BIN_SETS: Array<BinSet> = Array::with_max_entries(plimits::BIN_SETS, 0);

/// [0]: number of matchBinaries sets in use (0 skips the per-exec work).
#[map]
pub static POLICY_CONF: Array<u32> = Array::with_max_entries(4, 0);

/// Per process (tgid): its matchBinaries mask and its capabilities at exec.
#[map]
pub static PROCS: HashMap<u32, ProcState> = HashMap::with_max_entries(65536, 0);

/// Events a hook saw that no selector matched (filtered in the kernel), per hook.
#[map]
pub static FILTERED: PerCpuArray<u64> = PerCpuArray::with_max_entries(plimits::HOOKS, 0);

pub const PATH_MAX: usize = 4096;
pub const PATH_MASK: usize = PATH_MAX - 1;
const SLOT: usize = PATH_MAX + 256;

/// Captured arguments of the hook being evaluated (per CPU).
#[repr(C)]
pub struct ArgBuf {
    /// The hook point's record (tracepoints) or argument words (kernel functions, LSM).
    /// (8 bytes of slack: a field may start at any offset below RAW.)
    pub raw: [u8; plimits::RAW + 8],
    /// What an LSM program returns: 0, or a matched Override selector's error.
    pub ret: i32,
    /// 1 when a matched selector asked for Override (kprobes: bpf_override_return).
    pub ovr: u32,
    /// 1 when a network argument's guard failed: the hook does not apply (`net.rs`).
    pub skip: u32,
    /// The `HOOK_LISTS` key of the point being run (reported in the record).
    pub point: u32,
    /// The kernel and user stacks' ids (or -1), taken before the hooks of the point ran
    /// (here rather than on the stack: 6.1 caps the combined stack of the callbacks).
    pub kstack: i32,
    pub ustack: i32,
    /// The key of a `SCOPES` lookup (`scope.rs`).
    pub cgid: u64,
    /// The hooks of the point being run (its `HookList` ids).
    pub hooks: [u32; plimits::HOOKS_PER_TP],
    /// One read of a dentry's parent and name (`vfs.rs`).
    pub win: [u8; 40],
    /// The owner of a tracked socket among the arguments (TrackSock; pid 0: none): the
    /// event is that process's.
    pub owner: nightjar_common::SockOwner,
    pub ints: [u64; plimits::ARGS],
    /// Start and length of each string slot's value inside its slot.
    pub spos: [u32; plimits::STR_SLOTS],
    pub slen: [u32; plimits::STR_SLOTS],
    pub strs: [[u8; SLOT]; plimits::STR_SLOTS],
}

/// A string slot index the verifier can bound on every kernel (STR_SLOTS is a power of two).
#[inline(always)]
pub fn slot_idx(slot: usize) -> usize {
    slot & (plimits::STR_SLOTS - 1)
}

#[map]
static ARGBUF: PerCpuArray<ArgBuf> = PerCpuArray::with_max_entries(1, 0);

#[map]
static KEYBUF: PerCpuArray<Key<StrData>> = PerCpuArray::with_max_entries(1, 0);

/// The per-CPU LPM key buffer (string and address conditions).
#[inline(always)]
pub fn keybuf() -> Option<&'static mut Key<StrData>> {
    // SAFETY: per-CPU value; tracepoint programs do not nest on one CPU.
    KEYBUF.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(always)]
pub fn argbuf() -> Option<&'static mut ArgBuf> {
    // SAFETY: per-CPU value; tracepoint programs do not nest on one CPU.
    ARGBUF.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// State shared with the bpf_loop callbacks.
#[repr(C)]
struct Eval {
    key: u32,
    hook: u32,
    matched: u32,
}

/// Policy hooks on a non-syscall tracepoint, keyed by the attach cookie (the tracepoint's
/// id): the kernel puts a pt_regs pointer over the record's common header, so the record
/// itself cannot say which tracepoint fired.
#[tracepoint]
pub fn policy_tp(ctx: TracePointContext) -> u32 {
    if copy_record(&ctx, plimits::RAW as u32).is_some() {
        // SAFETY: helper on our own context.
        let key = unsafe { gen::bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
        run_hooks(key, ctx.as_ptr());
    }
    0
}

/// Policy hooks on syscalls:sys_enter_*: keyed by SYSCALL_ENTER | syscall number (the
/// kernel overwrites the common header of syscall records, so the event id is not there).
#[tracepoint]
pub fn policy_sys_enter(ctx: TracePointContext) -> u32 {
    // A sys_enter record: the common header, the syscall number, six argument words.
    if let Some(raw) = copy_record(&ctx, 64) {
        let nr = u32::from_ne_bytes([raw[8], raw[9], raw[10], raw[11]]) & 0xffff;
        run_hooks(nightjar_common::SYSCALL_ENTER | nr, ctx.as_ptr());
    }
    0
}

/// Policy hooks on syscalls:sys_exit_*: keyed by SYSCALL_EXIT | syscall number.
#[tracepoint]
pub fn policy_sys_exit(ctx: TracePointContext) -> u32 {
    // A sys_exit record: the common header, the syscall number, the return value.
    if let Some(raw) = copy_record(&ctx, 24) {
        let nr = u32::from_ne_bytes([raw[8], raw[9], raw[10], raw[11]]) & 0xffff;
        run_hooks(nightjar_common::SYSCALL_EXIT | nr, ctx.as_ptr());
    }
    0
}

/// Copies the first `len` (≤ RAW) bytes of the tracepoint record into the per-CPU arg
/// buffer: no more than the record has (a copy is a large part of a hook's cost).
#[inline(always)]
fn copy_record(ctx: &TracePointContext, len: u32) -> Option<&'static [u8; plimits::RAW + 8]> {
    if !crate::kread::in_scope() {
        return None;
    }
    let ab = argbuf()?;
    // SAFETY: copies RAW bytes of the tracepoint record into our per-CPU buffer.
    let rc = unsafe { gen::bpf_probe_read_kernel(ab.raw.as_mut_ptr() as *mut c_void, len, ctx.as_ptr()) };
    (rc == 0).then_some(&ab.raw)
}

/// On exec: the process's matchBinaries mask for its new binary (runs before exec_policy).
#[tracepoint]
pub fn exec_binmask(_ctx: TracePointContext) -> u32 {
    if !crate::kread::in_scope() {
        return 0;
    }
    // u32::MAX: no matchBinaries set in use, only the capabilities to record.
    let nbins = POLICY_CONF.get(0).copied().unwrap_or(0);
    if nbins == 0 {
        return 0;
    }
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let mut mask = 0u64;
    if nbins != u32::MAX && capture_exec_path(0) {
        // What this pid matched before the exec (its own or, after a fork, its parent's):
        // the sets with followChildren keep it.
        // SAFETY: read of a hash map value; a concurrent delete at worst gives 0.
        let before = unsafe { PROCS.get(pid) }.map(|s| s.binmask).unwrap_or(0);
        let mut st = BinScan { mask: 0, before };
        // SAFETY: bin_cb only touches the BinScan passed as its context.
        unsafe {
            gen::bpf_loop(
                nbins.min(plimits::BIN_SETS),
                bin_cb as *mut c_void,
                &mut st as *mut BinScan as *mut c_void,
                0,
            );
        }
        mask = st.mask;
    }
    let cred = rd_ptr(crate::task::current(), off!(task_real_cred));
    let caps = [
        rd::<u64>(cred, off!(cred_cap_effective)).unwrap_or(0),
        rd::<u64>(cred, off!(cred_cap_permitted)).unwrap_or(0),
        rd::<u64>(cred, off!(cred_cap_inheritable)).unwrap_or(0),
    ];
    let task = crate::task::current();
    let mut rec = NsRecord { task, st: ProcState { binmask: mask, caps, ns: [0; ns::COUNT], _pad: 0 } };
    // One namespace per step (unrolled, the ten reads made exec_binmask too large for
    // 6.1's verifier).
    // SAFETY: ns_record_cb only touches the NsRecord passed as its context.
    unsafe {
        gen::bpf_loop(ns::COUNT as u32, ns_record_cb as *mut c_void, &mut rec as *mut NsRecord as *mut c_void, 0);
    }
    let _ = PROCS.insert(pid, &rec.st, 0);
    0
}

/// What exec_binmask records, and the task it reads the namespaces of.
#[repr(C)]
struct NsRecord {
    task: u64,
    st: ProcState,
}

extern "C" fn ns_record_cb(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the &mut NsRecord handed to bpf_loop.
    let r = unsafe { &mut *(ctx as *mut NsRecord) };
    let i = i as usize;
    if i < ns::COUNT {
        r.st.ns[i] = crate::task::ns_inum(r.task, i);
    }
    0
}

/// On exec: the exec hooks (security_bprm_check & co.).
#[tracepoint]
pub fn exec_policy(ctx: TracePointContext) -> u32 {
    if !crate::kread::in_scope() {
        return 0;
    }
    run_hooks(EXEC_HOOKS_KEY, ctx.as_ptr());
    0
}

#[repr(C)]
struct BinScan {
    mask: u64,
    before: u64,
}

extern "C" fn bin_cb(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the &mut BinScan handed to bpf_loop.
    let st = unsafe { &mut *(ctx as *mut BinScan) };
    let b = (i & 63) as u32;
    let Some(set) = BIN_SETS.get(b) else { return 0 };
    let followed = set.follow != 0 && (st.before >> b) & 1 == 1;
    if set.op != 0 && (followed || str_match(0, set.cond, set.op)) {
        st.mask |= 1u64 << b;
    }
    0
}

/// Copies the parent's matchBinaries mask to a forked child (called from the fork hook).
#[inline(always)]
pub fn inherit(parent: u32, child: u32) {
    // SAFETY: read of a hash map value; a concurrent delete at worst gives a stale mask.
    if let Some(st) = unsafe { PROCS.get(parent) } {
        let st = *st;
        let _ = PROCS.insert(child, st, 0);
    }
}

/// Forgets an exited process.
#[inline(always)]
pub fn forget(pid: u32) {
    let _ = PROCS.remove(pid);
}

/// Runs the hooks of `key`; `ctx` is the program's context (for the stack, when a hook
/// of the list wants it).
#[inline(always)]
pub fn run_hooks(key: u32, ctx: *mut c_void) {
    // SAFETY: read-only use of the map value.
    let Some(list) = (unsafe { HOOK_LISTS.get(key) }) else { return };
    let n = list.count.min(plimits::HOOKS_PER_TP as u32);
    let Some(ab) = argbuf() else { return };
    ab.kstack = if list.stacks & u32::from(STACK_KERNEL) != 0 { crate::stack::kernel(ctx) } else { -1 };
    ab.ustack = if list.stacks & u32::from(STACK_USER) != 0 { crate::stack::user(ctx) } else { -1 };
    // The ids go to the per-CPU buffer: each hook then costs no second lookup of the list.
    ab.hooks = list.ids;
    ab.point = key;
    let mut ev = Eval { key, hook: 0, matched: 0 };
    // SAFETY: hook_cb only touches the Eval passed as its context.
    unsafe {
        gen::bpf_loop(n, hook_cb as *mut c_void, &mut ev as *mut Eval as *mut c_void, 0);
    }
}

extern "C" fn hook_cb(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(ab) = argbuf() else { return 1 };
    let hid = ab.hooks[(i as usize) & (plimits::HOOKS_PER_TP - 1)];
    if hid >= plimits::HOOKS {
        return 1;
    }
    run_hook(hid);
    0
}

#[inline(always)]
fn run_hook(hid: u32) {
    let Some(conf) = HOOK_CONF.get(hid) else { return };
    if conf.active == 0 {
        return;
    }
    if conf.scope != 0 && !crate::scope::admits(conf.scope) {
        return;
    }
    let nargs = (conf.nargs as u32).min(plimits::ARGS as u32);
    if let Some(ab) = argbuf() {
        ab.skip = 0;
        ab.owner = nightjar_common::SockOwner::default();
    }
    let mut cev = Eval { key: 0, hook: hid, matched: 0 };
    // SAFETY: capture_cb only touches the Eval passed as its context.
    unsafe {
        gen::bpf_loop(nargs, capture_cb as *mut c_void, &mut cev as *mut Eval as *mut c_void, 0);
    }
    if argbuf().is_some_and(|ab| ab.skip != 0) {
        return;
    }
    let mut ev = Eval { key: 0, hook: hid, matched: u32::MAX };
    let nsel = conf.nsel as u32;
    let (sel, act, sig, err, stack) = if nsel == 0 {
        (0u32, action::POST, 0u8, 0i32, 0u8)
    } else {
        // SAFETY: sel_cb only touches the Eval passed as its context.
        unsafe {
            gen::bpf_loop(
                nsel.min(plimits::SELECTORS as u32),
                sel_cb as *mut c_void,
                &mut ev as *mut Eval as *mut c_void,
                0,
            );
        }
        if ev.matched == u32::MAX {
            if let Some(c) = FILTERED.get_ptr_mut(hid) {
                // SAFETY: per-CPU counter.
                unsafe { *c += 1 };
            }
            return;
        }
        let Some(conf) = HOOK_CONF.get(hid) else { return };
        let s = &conf.sels[(ev.matched as usize) & (plimits::SELECTORS - 1)];
        let mut act = s.action;
        if s.fd_action != 0 {
            if s.fd_action >= action::TRACK_SOCK {
                crate::net::act(conf, s);
            } else {
                crate::fdfollow::act(conf, s);
            }
            // The event says what was done (Tetragon reports the selector's last action).
            if act == action::POST {
                act = s.fd_action;
            }
        }
        if s.action == action::POST && !rate_ok(hid, ev.matched, s) {
            return;
        }
        (ev.matched, act, s.signal, s.error, s.stack)
    };
    let mut signalled = 0u8;
    match act {
        action::NO_POST => return,
        action::SIGKILL => {
            // SAFETY: signals the current task only.
            signalled = u8::from(unsafe { gen::bpf_send_signal(9) } == 0);
        }
        action::SIGNAL => {
            // SAFETY: signals the current task only.
            signalled = u8::from(unsafe { gen::bpf_send_signal(sig as u32) } == 0);
        }
        action::NOTIFY_ENFORCER => crate::enforcer::notify(hid, sig),
        action::CLEANUP_ENFORCER => crate::enforcer::cleanup(),
        action::OVERRIDE => {
            // The LSM program returns it (user space allows Override on LSM hooks only).
            if let Some(ab) = argbuf() {
                ab.ret = err;
                ab.ovr = 1;
            }
        }
        _ => {}
    }
    emit(hid, act, sel as u8, signalled, stack);
}

extern "C" fn capture_cb(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the &mut Eval handed to bpf_loop.
    let ev = unsafe { &*(ctx as *const Eval) };
    let Some(conf) = HOOK_CONF.get(ev.hook) else { return 1 };
    capture(conf, i as usize);
    0
}

extern "C" fn sel_cb(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the &mut Eval handed to bpf_loop.
    let ev = unsafe { &mut *(ctx as *mut Eval) };
    let Some(conf) = HOOK_CONF.get(ev.hook) else { return 1 };
    let s = &conf.sels[(i as usize) & (plimits::SELECTORS - 1)];
    if !match_selector(conf, s) {
        return 0;
    }
    let mut ce = CondEval { hook: ev.hook, sel: i as u32, ok: 1 };
    let n = (s.nargs as u32).min(plimits::MATCH_ARGS as u32);
    // SAFETY: cond_cb only touches the CondEval passed as its context.
    unsafe {
        gen::bpf_loop(n, cond_cb as *mut c_void, &mut ce as *mut CondEval as *mut c_void, 0);
    }
    if ce.ok == 1 {
        ev.matched = i as u32;
        return 1;
    }
    0
}

#[inline(always)]
fn match_selector(conf: &HookConfig, s: &Selector) -> bool {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if s.bin_bit != 0xff {
        // SAFETY: read of a hash map value.
        let mask = unsafe { PROCS.get(tgid) }.map(|p| p.binmask).unwrap_or(0);
        let bit = (mask >> (s.bin_bit & 63)) & 1 == 1;
        if bit == (s.bin_negate != 0) {
            return false;
        }
    }
    let task = crate::task::current();
    if s.pbin_bit != 0xff && !parent_binary_match(task, s) {
        return false;
    }
    for k in 0..plimits::PID_CONDS {
        if k < s.npids as usize && !pid_match(task, &s.pids[k]) {
            return false;
        }
    }
    if s.nns != 0 && !ns_match(task, s) {
        return false;
    }
    if (s.cap_op != 0 || s.capchg_op != 0) && !caps_match(task, tgid, s) {
        return false;
    }
    if s.nschg_op != 0 && !ns_changes_match(task, tgid, s) {
        return false;
    }
    let _ = conf;
    true
}

/// matchParentBinaries: the parent's binary is in the selector's set (or not). Not
/// inlined, as `ns_match`.
#[inline(never)]
fn parent_binary_match(task: u64, s: &Selector) -> bool {
    let parent = rd_ptr(task, off!(task_real_parent));
    let ptgid = rd::<u32>(parent, off!(task_tgid)).unwrap_or(0);
    // SAFETY: read of a hash map value.
    let mask = unsafe { PROCS.get(ptgid) }.map(|p| p.binmask).unwrap_or(0);
    let bit = (mask >> (s.pbin_bit & 63)) & 1 == 1;
    bit != (s.pbin_negate != 0)
}

/// matchNamespaceChanges: whether one of the selector's namespaces differs from the
/// process's at exec (In), or none does (NotIn). A namespace not recorded at exec (a
/// process that has not exec'd since the agent started) counts as unchanged. Not inlined,
/// as `ns_match`.
#[inline(never)]
fn ns_changes_match(task: u64, tgid: u32, s: &Selector) -> bool {
    // SAFETY: read of a hash map value, in place (a copy on the stack pushed 6.1's combined
    // stack limit over).
    let Some(p) = (unsafe { PROCS.get(tgid) }) else { return s.nschg_op != op::IN };
    let mut changed = false;
    for slot in 0..ns::COUNT {
        if (s.nschg_mask >> slot) & 1 == 1 {
            let then = p.ns[slot];
            if then != 0 && crate::task::ns_inum(task, slot) != then {
                changed = true;
            }
        }
    }
    changed == (s.nschg_op == op::IN)
}

/// matchNamespaces: each entry's namespace among its values (In) or not. Not inlined, as
/// `caps_match`: the selector callback's stack is what 6.1's combined limit counts.
#[inline(never)]
fn ns_match(task: u64, s: &Selector) -> bool {
    for k in 0..plimits::NS_CONDS {
        if k < s.nns as usize {
            let c = &s.ns[k];
            let inum = crate::task::ns_inum(task, c.slot as usize);
            let mut found = false;
            for i in 0..plimits::NS_VALUES {
                if i < c.nvals as usize && c.vals[i] == inum {
                    found = true;
                }
            }
            if found != (c.op == op::IN) {
                return false;
            }
        }
    }
    true
}

/// matchCapabilities and matchCapabilityChanges: the capability set's bits in the mask
/// (any set: In; none: NotIn), and whether they differ from those at exec. With
/// isNamespaceCapability, a task in the host's user namespace never matches. Not inlined:
/// in the selector callback its stack pushed 6.1's combined limit (512 bytes) over.
#[inline(never)]
fn caps_match(task: u64, tgid: u32, s: &Selector) -> bool {
    let cred = rd_ptr(task, off!(task_real_cred));
    let set = |which: u8| match which {
        1 => off!(cred_cap_permitted),
        2 => off!(cred_cap_inheritable),
        _ => off!(cred_cap_effective),
    };
    if s.cap_op != 0 {
        if s.cap_userns != 0 && crate::task::ns_inum(task, ns::USER) == s.cap_userns {
            return false;
        }
        let caps = rd::<u64>(cred, set(s.cap_set)).unwrap_or(0);
        if (caps & s.cap_mask != 0) != (s.cap_op == op::IN) {
            return false;
        }
    }
    if s.capchg_op != 0 {
        if s.capchg_userns != 0 && crate::task::ns_inum(task, ns::USER) == s.capchg_userns {
            return false;
        }
        // SAFETY: read of a hash map value.
        let Some(st) = (unsafe { PROCS.get(tgid) }) else { return false };
        let at_exec = match s.capchg_set {
            1 => st.caps[1],
            2 => st.caps[2],
            _ => st.caps[0],
        };
        let now = rd::<u64>(cred, set(s.capchg_set)).unwrap_or(0);
        let changed = (now ^ at_exec) & s.capchg_mask != 0;
        if changed != (s.capchg_op == op::IN) {
            return false;
        }
    }
    true
}

/// One matchPIDs entry: the process's pid (or pid-namespace pid) among the values, or,
/// with followForks, that of one of its ancestors.
#[inline(always)]
fn pid_match(task: u64, c: &nightjar_common::PidCond) -> bool {
    let mut w = PidWalk { task, cond: *c, found: 0 };
    let n = if c.follow != 0 { plimits::PID_ANCESTORS } else { 1 };
    // SAFETY: pid_cb only touches the PidWalk passed as its context.
    unsafe {
        gen::bpf_loop(n, pid_cb as *mut c_void, &mut w as *mut PidWalk as *mut c_void, 0);
    }
    (w.found != 0) == (c.op == op::IN)
}

#[repr(C)]
struct PidWalk {
    task: u64,
    cond: nightjar_common::PidCond,
    found: u32,
}

extern "C" fn pid_cb(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the &mut PidWalk handed to bpf_loop.
    let w = unsafe { &mut *(ctx as *mut PidWalk) };
    if w.task == 0 {
        return 1;
    }
    let pid =
        if w.cond.ns != 0 { crate::task::pid_ns(w.task).1 } else { rd::<u32>(w.task, off!(task_tgid)).unwrap_or(0) };
    for i in 0..plimits::PID_VALUES {
        if i < w.cond.nvals as usize && w.cond.vals[i] == pid {
            w.found = 1;
            return 1;
        }
    }
    let parent = rd_ptr(w.task, off!(task_real_parent));
    if parent == w.task || pid <= 1 {
        return 1;
    }
    w.task = parent;
    0
}

/// Rate-limit state: when each (hook, selector, scope, arguments) last posted.
#[map]
static RATE: LruHashMap<nightjar_common::RateKey, u64> = LruHashMap::with_max_entries(16384, 0);

/// Events a selector's rateLimit held back, per hook.
#[map]
pub static RATE_LIMITED: PerCpuArray<u64> = PerCpuArray::with_max_entries(plimits::HOOKS, 0);

/// False when selector `sel` of hook `hid` posted these arguments within its rateLimit.
#[inline(always)]
fn rate_ok(hid: u32, sel: u32, s: &Selector) -> bool {
    if s.rate_ns == 0 {
        return true;
    }
    let Some(ab) = argbuf() else { return true };
    let pid_tgid = bpf_get_current_pid_tgid();
    let scope = match s.rate_scope {
        nightjar_common::rate_scope::GLOBAL => 0,
        nightjar_common::rate_scope::PROCESS => pid_tgid >> 32,
        _ => pid_tgid,
    };
    // The arguments, folded: integers and the first bytes and length of each string.
    let mut h = 0u64;
    for i in 0..plimits::ARGS {
        h = h.rotate_left(7) ^ ab.ints[i];
    }
    for i in 0..plimits::STR_SLOTS {
        let pos = ab.spos[i] as usize & PATH_MASK;
        let tail = &ab.strs[i][pos..pos + 8];
        h = h.rotate_left(7)
            ^ u64::from_ne_bytes([tail[0], tail[1], tail[2], tail[3], tail[4], tail[5], tail[6], tail[7]])
            ^ ab.slen[i] as u64;
    }
    let key = nightjar_common::RateKey { hook: hid, sel, scope, args: h };
    let now = now();
    // SAFETY: read of an LRU map value.
    if let Some(last) = unsafe { RATE.get(&key) } {
        if now.wrapping_sub(*last) < s.rate_ns {
            if let Some(c) = RATE_LIMITED.get_ptr_mut(hid) {
                // SAFETY: per-CPU counter.
                unsafe { *c += 1 };
            }
            return false;
        }
    }
    let _ = RATE.insert(&key, &now, 0);
    true
}

/// State of the matchArgs loop of one selector.
#[repr(C)]
struct CondEval {
    hook: u32,
    sel: u32,
    ok: u32,
}

extern "C" fn cond_cb(c: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the &mut CondEval handed to bpf_loop.
    let ce = unsafe { &mut *(ctx as *mut CondEval) };
    let Some(conf) = HOOK_CONF.get(ce.hook) else {
        ce.ok = 0;
        return 1;
    };
    let s = &conf.sels[(ce.sel as usize) & (plimits::SELECTORS - 1)];
    let c = c as usize;
    if c >= plimits::MATCH_ARGS {
        return 1;
    }
    let cond = &s.args[c];
    let a = cond.arg as usize;
    if a >= plimits::ARGS {
        ce.ok = 0;
        return 1;
    }
    let spec = &conf.args[a];
    let ok = if spec.src == argsrc::INT {
        int_match(a, cond)
    } else if (argsrc::NET_FIRST..=argsrc::NET_LAST).contains(&spec.src) && spec.src != argsrc::NET_DEV {
        argbuf().is_some_and(|ab| crate::net::matches(ab.strs[slot_idx(spec.slot as usize)].as_ptr(), spec.src, cond))
    } else {
        str_match(slot_idx(spec.slot as usize), cond.cond, cond.op)
    };
    if !ok {
        ce.ok = 0;
        return 1;
    }
    0
}

#[inline(always)]
fn int_match(a: usize, cond: &nightjar_common::ArgCond) -> bool {
    let Some(ab) = argbuf() else { return false };
    if a >= plimits::ARGS {
        return false;
    }
    let v = ab.ints[a];
    let mut any = false;
    for i in 0..plimits::INT_VALUES {
        if i < cond.nvals as usize {
            let x = cond.vals[i];
            let hit = match cond.op {
                op::IN_MAP | op::NOT_IN_MAP => false,
                op::EQUAL | op::NOT_EQUAL | op::IN | op::NOT_IN => v == x,
                op::GT => (v as i64) > (x as i64),
                op::LT => (v as i64) < (x as i64),
                op::MASK => v & x != 0,
                _ => false,
            };
            if hit {
                any = true;
            }
        }
    }
    match cond.op {
        op::IN_MAP | op::NOT_IN_MAP => {
            let bit = v < 512 && (cond.vals[((v >> 6) as usize) & 7] >> (v & 63)) & 1 == 1;
            bit == (cond.op == op::IN_MAP)
        }
        op::NOT_EQUAL | op::NOT_IN => !any,
        _ => any,
    }
}

/// Looks the string in `slot` up among condition `cond`'s values under `op`.
#[inline(always)]
fn str_match(slot: usize, cond: u32, opr: u8) -> bool {
    let Some(ab) = argbuf() else { return false };
    let Some(key) = KEYBUF.get_ptr_mut(0) else { return false };
    // SAFETY: per-CPU scratch key.
    let key = unsafe { &mut *key };
    let slot = slot_idx(slot);
    let pos = ab.spos[slot] as usize & PATH_MASK;
    let len = ab.slen[slot] as usize;
    let max = plimits::STR - 1;
    key.data.cond = cond.to_ne_bytes();
    let base = ab.strs[slot].as_ptr();
    let (n, bytes) = match opr {
        op::EQUAL | op::NOT_EQUAL | op::IN | op::NOT_IN => {
            if len > max {
                return opr == op::NOT_EQUAL || opr == op::NOT_IN;
            }
            let n = len & 0xff;
            let n = if n > max { max } else { n };
            copy(key, base, pos, n);
            key.data.data[n] = 0;
            (n, n + 1)
        }
        op::PREFIX | op::NOT_PREFIX => {
            let n = if len > max { max } else { len };
            let n = n & 0xff;
            let n = if n > max { max } else { n };
            copy(key, base, pos, n);
            (n, n)
        }
        op::POSTFIX | op::NOT_POSTFIX => {
            let n = if len > max { max } else { len };
            let mut r = Rev { slot: slot as u32, end: (pos + len) as u32, n: n as u32 };
            // SAFETY: rev_cb only touches the Rev passed as its context and the key buffer.
            unsafe {
                gen::bpf_loop(n as u32, rev_cb as *mut c_void, &mut r as *mut Rev as *mut c_void, 0);
            }
            (n, n)
        }
        _ => return false,
    };
    let _ = n;
    key.prefix_len = 32 + 8 * bytes as u32;
    let found = STRINGS.get(&*key).is_some_and(|v| *v == cond);
    match opr {
        op::NOT_EQUAL | op::NOT_IN | op::NOT_PREFIX | op::NOT_POSTFIX => !found,
        _ => found,
    }
}

#[inline(always)]
fn copy(key: &mut Key<StrData>, base: *const u8, pos: usize, n: usize) {
    let n = core::hint::black_box(n) & 0xff;
    let n = if n > plimits::STR - 1 { plimits::STR - 1 } else { n };
    // SAFETY: pos ≤ PATH_MASK and n < 256: inside the slot (PATH_MAX + 256 bytes).
    unsafe {
        gen::bpf_probe_read_kernel(key.data.data.as_mut_ptr() as *mut c_void, n as u32, base.add(pos) as *const c_void);
    }
}

#[repr(C)]
struct Rev {
    slot: u32,
    end: u32,
    n: u32,
}

extern "C" fn rev_cb(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the &mut Rev handed to bpf_loop.
    let r = unsafe { &*(ctx as *const Rev) };
    let Some(ab) = argbuf() else { return 1 };
    let Some(key) = KEYBUF.get_ptr_mut(0) else { return 1 };
    let i = i as usize;
    if i >= plimits::STR - 1 || i >= r.n as usize {
        return 1;
    }
    let src = (r.end as usize).wrapping_sub(1 + i) & PATH_MASK;
    let slot = slot_idx(r.slot as usize);
    // SAFETY: per-CPU key buffer; i < STR - 1.
    unsafe { (*key).data.data[i] = ab.strs[slot][src] };
    0
}

/// Reads argument `i` of `conf` into the arg buffer.
#[inline(always)]
fn capture(conf: &HookConfig, i: usize) {
    let Some(ab) = argbuf() else { return };
    if i >= plimits::ARGS {
        return;
    }
    let spec = &conf.args[i];
    let o = (spec.offset as usize) & (plimits::RAW - 1);
    let raw = &ab.raw;
    let word = u64::from_ne_bytes([
        raw[o],
        raw[o + 1],
        raw[o + 2],
        raw[o + 3],
        raw[o + 4],
        raw[o + 5],
        raw[o + 6],
        raw[o + 7],
    ]);
    let word = if spec.res.set != 0 { crate::resolve::walk(&spec.res, word) } else { word };
    let slot = slot_idx(spec.slot as usize);
    match spec.src {
        argsrc::INT => {
            let v = match (spec.size, spec.signed != 0) {
                (1, false) => word & 0xff,
                (1, true) => word as u8 as i8 as i64 as u64,
                (2, false) => word & 0xffff,
                (2, true) => word as u16 as i16 as i64 as u64,
                (4, false) => word & 0xffff_ffff,
                (4, true) => word as u32 as i32 as i64 as u64,
                _ => word,
            };
            ab.ints[i] = v;
        }
        argsrc::USER_STR | argsrc::KERNEL_STR | argsrc::FILENAME_PTR => {
            let dst = ab.strs[slot].as_mut_ptr() as *mut c_void;
            // SAFETY (all three): copy at most PATH_MAX bytes into the slot; a bad address
            // fails the helper instead of faulting.
            let n = match spec.src {
                argsrc::USER_STR => unsafe {
                    gen::bpf_probe_read_user_str(dst, PATH_MAX as u32, word as *const c_void)
                },
                argsrc::FILENAME_PTR => {
                    let name = rd_ptr(word, 0);
                    unsafe { gen::bpf_probe_read_kernel_str(dst, PATH_MAX as u32, name as *const c_void) }
                }
                // A kernel function's `char *` may point to user memory (do_sys_openat2's
                // filename): the compat helper reads either on this architecture.
                _ => unsafe { gen::bpf_probe_read_str(dst, PATH_MAX as u32, word as *const c_void) },
            };
            ab.spos[slot] = 0;
            ab.slen[slot] = if n > 0 { (n - 1) as u32 } else { 0 };
        }
        argsrc::CHAR_BUF | argsrc::IOV_ITER | argsrc::CHAR_IOVEC => {
            crate::charbuf::capture(slot, spec.src, word, spec.aux)
        }
        argsrc::CRED
        | argsrc::USER_NS
        | argsrc::MODULE
        | argsrc::LOAD_INFO
        | argsrc::BPF_ATTR
        | argsrc::BPF_MAP
        | argsrc::PERF_EVENT => {
            crate::kstruct::capture(slot, spec.src, word);
        }
        argsrc::PATH_PTR | argsrc::DENTRY_PTR => {
            let (dentry, mnt) = if spec.src == argsrc::PATH_PTR { crate::vfs::path_of(word) } else { (word, 0) };
            capture_path(slot, dentry, mnt);
        }
        src if (argsrc::NET_FIRST..=argsrc::NET_LAST).contains(&src) => {
            let ret = i64::from_ne_bytes([raw[16], raw[17], raw[18], raw[19], raw[20], raw[21], raw[22], raw[23]]);
            let dst = ab.strs[slot].as_mut_ptr();
            match crate::net::capture(spec, word, ret, dst) {
                Some(n) => {
                    ab.spos[slot] = 0;
                    ab.slen[slot] = n as u32;
                }
                None => ab.skip = 1,
            }
        }
        src => {
            // Every path source comes down to a `struct file *`: one walk serves them all
            // (one inlined copy of the walker keeps the verifier's work bounded).
            if src == argsrc::FD_PATH && crate::fdfollow::lookup(slot, word) {
                ab.ints[i] = word;
                return;
            }
            let file = match src {
                argsrc::RET_FD_PATH | argsrc::FD_PATH => {
                    ab.ints[i] = word;
                    if (word as i64) >= 0 {
                        fd_file(word)
                    } else {
                        0
                    }
                }
                argsrc::EXEC_PATH => exe_file(),
                argsrc::FILE_PTR => word,
                argsrc::BPRM_FILE => rd_ptr(word, off!(binprm_file)),
                argsrc::KIOCB_FILE => rd_ptr(word, off!(kiocb_ki_filp)),
                _ => return,
            };
            capture_file_path(slot, file);
        }
    }
}

/// The current task's file for descriptor `fd` (0 when absent).
#[inline(always)]
pub(crate) fn fd_file(fd: u64) -> u64 {
    let task = unsafe { gen::bpf_get_current_task() };
    let files = rd_ptr(task, off!(task_files));
    let fdt = rd_ptr(files, off!(files_fdt));
    // max_fds (an unsigned int) and the fd array: one read where they are adjacent.
    let (max, fds) = crate::vfs::pair(fdt, off!(fdtable_max_fds), off!(fdtable_fd));
    if fd >= max & 0xffff_ffff {
        return 0;
    }
    if fds == 0 {
        return 0;
    }
    rd::<u64>(fds + fd * 8, 0).unwrap_or(0)
}

/// The current task's executable (mm->exe_file).
#[inline(always)]
fn exe_file() -> u64 {
    let task = unsafe { gen::bpf_get_current_task() };
    let mm = rd_ptr(task, off!(task_mm));
    rd_ptr(mm, off!(mm_exe_file))
}

/// The current task's executable path into string slot `slot`.
#[inline(always)]
fn capture_exec_path(slot: usize) -> bool {
    capture_file_path(slot, exe_file())
}

/// Writes the absolute path of `file` into string slot `slot` (right-aligned, as
/// d_path does). Returns false when there is no file.
#[inline(always)]
fn capture_file_path(slot: usize, file: u64) -> bool {
    let (dentry, vfsmnt) = crate::vfs::path_of(crate::vfs::file_path(file));
    capture_path(slot, dentry, vfsmnt)
}

/// Writes the absolute path of (dentry, vfsmount) into string slot `slot`; with no
/// vfsmount, the dentry's path within its mount.
#[inline(always)]
fn capture_path(slot: usize, dentry: u64, vfsmnt: u64) -> bool {
    let Some(ab) = argbuf() else { return false };
    let slot = slot_idx(slot);
    ab.spos[slot] = PATH_MAX as u32;
    ab.slen[slot] = 0;
    let Some((start, _)) = crate::vfs::walk(dentry, vfsmnt, crate::vfs::PREPEND, slot as u64) else {
        return false;
    };
    let mut pos = (start as usize) & PATH_MASK;
    if start as usize >= PATH_MAX {
        // The root itself.
        pos = PATH_MAX - 1;
        ab.strs[slot][pos] = b'/';
    }
    ab.spos[slot] = pos as u32;
    ab.slen[slot] = (PATH_MAX - pos) as u32;
    true
}

#[repr(C)]
struct EmitArgs {
    hid: u32,
    /// Where the next argument goes in the record.
    at: u64,
}

/// Writes argument `i` (header and value) at `at` in the record being assembled.
extern "C" fn emit_cb(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the &mut EmitArgs handed to bpf_loop.
    let st = unsafe { &mut *(ctx as *mut EmitArgs) };
    let Some(conf) = HOOK_CONF.get(st.hid) else { return 1 };
    let Some(ab) = argbuf() else { return 1 };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return 1 };
    let i = i as usize;
    if i >= plimits::ARGS {
        return 1;
    }
    // SAFETY: per-CPU scratch value, SCRATCH + ARGS_MAX bytes.
    let base = unsafe { (*scratch).buf.as_mut_ptr() };
    let spec = &conf.args[i];
    let slot = slot_idx(spec.slot as usize);
    let a = (st.at as usize) & SCRATCH_MASK;
    if spec.src == argsrc::INT {
        let h = ArgHeader { len: 8, src: spec.src, truncated: 0 };
        // SAFETY: a ≤ SCRATCH_MASK; 12 bytes fit in the slack.
        unsafe {
            core::ptr::write_unaligned(base.add(a) as *mut ArgHeader, h);
            core::ptr::write_unaligned(base.add(a + 4) as *mut u64, ab.ints[i]);
        }
        st.at = (a + 12) as u64;
    } else {
        // A buffer (char_buf, iov_iter, char_iovec) is reported with the size word before
        // its bytes. One compare for all (`is_buf`): two made 6.1's verifier lose the
        // bounds of `i` here (the compiler spilled it unbounded).
        let buf = argsrc::is_buf(spec.src);
        let len = ab.slen[slot] as usize + if buf { 8 } else { 0 };
        let room = plimits::ARG_REPORT - 8;
        let n = if len > room { room } else { len };
        let n = core::hint::black_box(n) & (PATH_MAX - 1);
        let h = ArgHeader { len: n as u16, src: spec.src, truncated: u8::from(len > n) };
        let pos = if buf { 0 } else { ab.spos[slot] as usize & PATH_MASK };
        // SAFETY: a ≤ SCRATCH_MASK, n < PATH_MAX ≤ the slack after SCRATCH.
        unsafe {
            core::ptr::write_unaligned(base.add(a) as *mut ArgHeader, h);
            gen::bpf_probe_read_kernel(
                base.add(a + 4) as *mut c_void,
                n as u32,
                ab.strs[slot].as_ptr().add(pos) as *const c_void,
            );
        }
        st.at = (a + 4 + n) as u64;
    }
    0
}

/// Writes the policy record with the captured arguments to the ring buffer.
#[inline(always)]
fn emit(hid: u32, act: u8, sel: u8, signalled: u8, stack: u8) {
    let Some(conf) = HOOK_CONF.get(hid) else { return };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        count_missed(kind::POLICY, cause::SCRATCH);
        return;
    };
    // SAFETY: per-CPU scratch value, SCRATCH + ARGS_MAX bytes.
    let base = unsafe { (*scratch).buf.as_mut_ptr() };
    let pid_tgid = bpf_get_current_pid_tgid();
    // A tracked socket's event is its owner's (TrackSock).
    let (pid, tid) = match argbuf() {
        Some(ab) if ab.owner.pid != 0 => (ab.owner.pid, ab.owner.tid),
        _ => ((pid_tgid >> 32) as u32, pid_tgid as u32),
    };
    // The stacks the point took, if the matched selector asked for them.
    let (kstack, ustack, point) = match argbuf() {
        Some(ab) => (
            if stack & STACK_KERNEL != 0 { ab.kstack } else { -1 },
            if stack & STACK_USER != 0 { ab.ustack } else { -1 },
            ab.point,
        ),
        None => (-1, -1, 0),
    };
    let nargs = (conf.nargs as usize).min(plimits::ARGS);
    let hdr = PolicyRecord {
        hdr: RecordHeader { kind: kind::POLICY, _pad: 0, size: 0, ktime: now() },
        pid,
        tid,
        hook: hid,
        action: act,
        nargs: nargs as u8,
        selector: sel,
        signalled,
        kstack,
        ustack,
        point,
        _pad: 0,
    };
    // SAFETY: the record header fits at the start of the scratch value.
    unsafe { core::ptr::write_unaligned(base as *mut PolicyRecord, hdr) };
    // One argument per bpf_loop iteration: the write offset is reloaded and masked each
    // time, which every kernel's verifier can bound (an unrolled loop lost the bound on 6.1).
    let mut st = EmitArgs { hid, at: core::mem::size_of::<PolicyRecord>() as u64 };
    // SAFETY: emit_cb only touches the EmitArgs passed as its context and per-CPU buffers.
    unsafe {
        gen::bpf_loop(nargs as u32, emit_cb as *mut c_void, &mut st as *mut EmitArgs as *mut c_void, 0);
    }
    let at = st.at as usize;
    let total = at & SCRATCH_MASK;
    // SAFETY: 4-byte write inside the header we wrote above.
    unsafe { core::ptr::write_unaligned(base.add(4) as *mut u32, total as u32) };
    // SAFETY: total ≤ SCRATCH_MASK, inside the scratch value.
    let data = unsafe { core::slice::from_raw_parts(base, total) };
    if EVENTS.output::<[u8]>(data, wake_flags()).is_err() {
        count_missed(kind::POLICY, cause::RINGBUF_FULL);
    }
}
