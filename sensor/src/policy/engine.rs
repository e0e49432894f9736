//! The loaded policies and their kernel state: ids, map entries, attached tracepoints.
//! Policies are added and removed at runtime; a policy is loaded whole or not at all, and
//! removing one never disturbs the others.
use std::{
    collections::{BTreeMap, HashMap},
    os::fd::AsFd,
};

use aya::{
    maps::{lpm_trie::Key, Array, HashMap as BpfHashMap, LpmTrie, MapData},
    programs::{
        fentry::FEntryLinkId,
        kprobe::KProbeLinkId,
        lsm::LsmLinkId,
        raw_trace_point::RawTracePointLinkId,
        trace_point::TracePointLinkId,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
        FEntry, KProbe, Lsm, RawTracePoint, TracePoint, UProbe,
    },
    Btf, Ebpf,
};
use nightjar_common::{plimits, BinSet, HookConfig, HookList, KfuncKeys, ProcState, StrData};
use serde::Serialize;

use super::compile::{self, ArgMeta, Attach, Env, HookKind, HookPlan};
use super::Loaded;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Policy(#[from] Box<nightjar_event::config::ConfigError>),
    #[error("policy {0:?} is already loaded; delete it first")]
    Exists(String),
    #[error("no policy named {0:?} is loaded")]
    NotFound(String),
    #[error("policy {name:?}: the kernel limit of {limit} {what} is reached")]
    Full { name: String, what: &'static str, limit: u32 },
    #[error("policy {name:?}: {op}: {source}")]
    Map { name: String, op: &'static str, source: Box<aya::maps::MapError> },
    #[error("policy {name:?}: attaching {tracepoint}: {source}{}", detail(source))]
    Attach { name: String, tracepoint: String, source: Box<aya::programs::ProgramError> },
    #[error("eBPF program or map {0} is missing from the object")]
    Missing(&'static str),
}

/// Loads a program through the kernel's verifier, saying how long that took: on some
/// kernels a program takes the verifier minutes (until its instruction limit), and a
/// start that waits on it must not look hung.
pub(crate) fn verified<T>(
    program: &str,
    load: impl FnOnce() -> Result<T, aya::programs::ProgramError>,
) -> Result<T, aya::programs::ProgramError> {
    let t0 = std::time::Instant::now();
    tracing::debug!(program, "eBPF program: verifying");
    let r = load();
    let ms = t0.elapsed().as_millis() as u64;
    match &r {
        Ok(_) if ms >= 2000 => tracing::warn!(program, ms, "eBPF program: the verifier took long"),
        Ok(_) => tracing::debug!(program, ms, "eBPF program: loaded"),
        Err(e) => tracing::error!(program, ms, error = %e, "eBPF program: refused by the kernel"),
    }
    r
}

/// The cause of a program error (the syscall's errno), which aya keeps as its source.
fn detail(e: &aya::programs::ProgramError) -> String {
    let mut out = String::new();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        out.push_str(&format!(": {c}"));
        cur = c.source();
    }
    out
}

/// An attached hook point (tracepoint, fentry, kprobe or LSM program).
enum Link {
    Tp(&'static str, TracePointLinkId),
    /// A tracepoint of `policy_tp`, whose key is the link's cookie.
    TpCookie(crate::perf::CookieLink),
    /// Program name, link, and its slot in the fentry syscall pool.
    Fentry(String, FEntryLinkId, Option<usize>),
    Kprobe(&'static str, KProbeLinkId),
    Lsm(&'static str, LsmLinkId),
    /// A raw tracepoint: the slot of its `raw_tp_N` program, and the link.
    RawTp(usize, RawTracePointLinkId),
    /// Program (`uprobe_policy` or `usdt_policy`) and link.
    Uprobe(&'static str, UProbeLinkId),
    /// A generic kernel-function hook (its kretprobe, for return hooks; the entry kprobe is
    /// shared, in `kprobe_entries`) and where its keys are in `KFUNC_KEYS`.
    Kfunc {
        link: Option<KProbeLinkId>,
        function: String,
        ip: u64,
        ret: bool,
    },
}

/// What events need to know about a hook.
#[derive(Debug, Clone, Serialize)]
pub struct HookMeta {
    pub policy: String,
    pub kind: HookKind,
    pub function: String,
    pub args: Vec<ArgMeta>,
    pub served_by: String,
    pub message: Option<String>,
    pub tags: Vec<String>,
    /// The binary of a uprobe.
    pub target: Option<String>,
    /// Stack traces some selector wants (`nightjar_common::STACK_KERNEL`).
    #[serde(skip)]
    pub stacks: u8,
    /// A uprobe's points by `HOOK_LISTS` key: the symbol (or hex offset) each fired at.
    #[serde(skip)]
    pub points: HashMap<u32, String>,
}

impl HookMeta {
    /// The symbol of a uprobe event from point `key` (the hook's first one if unknown).
    pub fn point_name(&self, key: u32) -> &str {
        self.points.get(&key).map(String::as_str).unwrap_or(&self.function)
    }
}

/// A loaded policy, for `nightjar policy list` and `status`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub name: String,
    pub source: String,
    pub hooks: Vec<HookStatus>,
    /// The Kubernetes scope (podSelector, containerSelector, namespace, hostSelector) and
    /// the container cgroups it admits now; absent for a policy that applies everywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HookStatus {
    pub id: u32,
    pub function: String,
    /// The kind of kernel hook: `tracepoint`, `fentry`, `kprobe` or `lsm`.
    pub backend: String,
    /// Where it is attached: `syscalls/sys_exit_openat`, `security_file_open`, `file_open`.
    pub points: Vec<String>,
    /// Human description (backend, hook points, where the arguments come from).
    pub served_by: String,
    /// Hits no selector matched (filtered in the kernel), as of `status`.
    #[serde(default)]
    pub filtered: u64,
    /// Events a rateLimit held back in the kernel, as of `status`.
    #[serde(default)]
    pub rate_limited: u64,
}

struct Installed {
    status: PolicyStatus,
    hooks: Vec<(u32, Vec<Attach>)>,
    strings: Vec<(StrData, u32)>,
    bits: Vec<u32>,
    /// Its `ENFORCER_CALLS` keys (a policy with `enforcers:`).
    enforced: Vec<u64>,
}

/// The `links` key of the enforcer program (attached while a policy has `enforcers:`).
const ENFORCER_LINK: &str = "enforcer";

/// `backend:point`, the identity of an attached hook point.
fn link_key(a: &Attach) -> String {
    format!("{}:{}", a.backend(), a.point())
}

/// The raw tracepoint programs, by slot (`sensor-bpf/src/rawtp.rs`).
const RAW_TP_PROGRAMS: [&str; plimits::RAW_TPS] =
    ["raw_tp_0", "raw_tp_1", "raw_tp_2", "raw_tp_3", "raw_tp_4", "raw_tp_5", "raw_tp_6", "raw_tp_7"];

/// The dedicated fentry program of a kernel function (syscalls use the pool).
fn fentry_program(function: &str) -> Option<&'static str> {
    match function {
        "security_file_open" => Some("fentry_file_open"),
        "security_bprm_check" => Some("fentry_bprm_check"),
        _ => None,
    }
}

/// The kprobe program of a kernel function.
fn kprobe_program(function: &str) -> &'static str {
    match function {
        "security_file_open" => "kprobe_file_open",
        "security_bprm_check" => "kprobe_bprm_check",
        _ => "kprobe_syscall",
    }
}

pub struct PolicyEngine {
    env: Env,
    policies: BTreeMap<String, Installed>,
    meta: HashMap<u32, HookMeta>,
    lists: HashMap<u32, Vec<u32>>,
    /// Attached hook points by `backend:point`.
    links: HashMap<String, Link>,
    /// The kernel's BTF, for fentry and LSM programs.
    btf: Option<Btf>,
    /// The function each `fentry_sys_N` program is loaded for.
    fentry_pool: Vec<Option<String>>,
    /// The raw tracepoint each `raw_tp_N` program is attached to.
    raw_tp_pool: Vec<Option<String>>,
    free_hooks: Vec<u32>,
    free_bits: Vec<u32>,
    /// A policy used matchCapabilityChanges: exec_binmask records every exec's
    /// capabilities from then on (kept, like the program itself).
    record_caps: bool,
    next_cond: u32,
    /// Keys given to uprobe points (`path:symbol`), kept while attached.
    uprobe_keys: HashMap<String, u32>,
    next_uprobe: u32,
    /// Keys of each kernel function hooked by kprobe.
    kfunc_keys: HashMap<String, KfuncKeys>,
    /// The entry kprobe of each hooked kernel function and how many hooks use it.
    kprobe_entries: HashMap<String, (KProbeLinkId, usize)>,
    /// The loaded Kubernetes scopes and the kernel's `SCOPES` map.
    scopes: crate::hooks::scope::Scopes,
    /// The running processes, walked once per policy load (matchBinaries sets).
    running: Option<super::running::Processes>,
}

impl PolicyEngine {
    pub fn new(env: Env, btf: Option<Btf>) -> Self {
        PolicyEngine {
            env,
            policies: BTreeMap::new(),
            meta: HashMap::new(),
            lists: HashMap::new(),
            links: HashMap::new(),
            btf,
            fentry_pool: vec![None; plimits::FENTRY_SYSCALLS],
            raw_tp_pool: vec![None; plimits::RAW_TPS],
            free_hooks: (0..plimits::HOOKS).rev().collect(),
            free_bits: (0..plimits::BIN_SETS).rev().collect(),
            record_caps: false,
            next_cond: 1,
            uprobe_keys: HashMap::new(),
            next_uprobe: 1,
            kfunc_keys: HashMap::new(),
            kprobe_entries: HashMap::new(),
            scopes: crate::hooks::scope::Scopes::new(),
            running: None,
        }
    }

    /// Loaded hooks: (id, meta), for per-hook counters.
    pub fn loaded_hooks(&self) -> Vec<(u32, &HookMeta)> {
        self.policies
            .values()
            .flat_map(|p| p.hooks.iter().map(|(id, _)| *id))
            .filter_map(|id| self.meta.get(&id).map(|m| (id, m)))
            .collect()
    }

    pub fn hook(&self, id: u32) -> Option<&HookMeta> {
        self.meta.get(&id)
    }

    pub fn list(&self) -> Vec<PolicyStatus> {
        self.policies
            .values()
            .map(|p| PolicyStatus { scope: self.scopes.describe(&p.status.name), ..p.status.clone() })
            .collect()
    }

    /// This node's pods, for the Kubernetes scopes; rewrites the scope map.
    pub fn set_pods(&mut self, ebpf: &mut Ebpf, pods: Vec<super::scope::PodMeta>) {
        self.scopes.set_pods(pods);
        self.sync_scopes(ebpf);
    }

    /// Walks the container cgroups again (new containers) while some scope is loaded.
    pub fn rescan_scopes(&mut self, ebpf: &mut Ebpf) {
        if self.scopes.any() {
            self.sync_scopes(ebpf);
        }
    }

    fn sync_scopes(&mut self, ebpf: &mut Ebpf) {
        if let Err(e) = self.scopes.sync(ebpf) {
            tracing::warn!(error = %e, "cannot write the policy scope map");
        }
    }

    /// Plans the policy on this kernel (without loading it): the located errors and the
    /// backend of each hook.
    /// The tracepoint programs these policies' hooks would run on (not yet loaded ones
    /// included; a policy that does not plan is left to `add` to report).
    pub fn programs_for(&self, ls: &[Loaded]) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = ls
            .iter()
            .filter_map(|l| self.plan(l).ok())
            .flatten()
            .flat_map(|p| p.attach)
            .filter_map(|a| match a {
                Attach::Tracepoint { program, .. } => Some(program),
                Attach::Exec => Some("exec_policy"),
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    pub fn plan(&self, l: &Loaded) -> Result<Vec<HookPlan>, EngineError> {
        let mut plans = compile::plan(l, &self.env).map_err(|e| EngineError::Policy(Box::new(e)))?;
        // A uprobe point keeps its key while attached; a new one gets the next.
        let mut next = self.next_uprobe;
        let mut given = self.uprobe_keys.clone();
        for p in &mut plans {
            for a in &mut p.attach {
                let point = link_key(a);
                let (Attach::Uprobe { key, .. } | Attach::Kfunc { key, .. }) = a else { continue };
                let flag =
                    if point.starts_with("uprobe:") { nightjar_common::UPROBE_KEY } else { nightjar_common::KFUNC_KEY };
                *key = *given.entry(point).or_insert_with(|| {
                    next += 1;
                    flag | (next & 0xffff)
                });
            }
        }
        self.plan_raw_tps(l, &mut plans)?;
        // Syscalls by fentry need a program of the pool each; beyond it, kprobes serve them.
        let mut free = self.fentry_pool.iter().filter(|s| s.is_none()).count();
        let mut taken = Vec::new();
        for p in &mut plans {
            for a in &mut p.attach {
                let Attach::Fentry { function, key } = a else { continue };
                if fentry_program(function).is_some()
                    || self.links.contains_key(&link_key(&Attach::Fentry { function: function.clone(), key: *key }))
                    || taken.contains(function)
                {
                    continue;
                }
                if free > 0 {
                    free -= 1;
                    taken.push(function.clone());
                } else if self.env.kernel.kprobes {
                    *a = Attach::Kprobe { function: function.clone(), key: *key };
                    p.backend = "kprobe".into();
                    p.served_by = p.served_by.replacen("fentry", "kprobe", 1);
                } else {
                    return Err(EngineError::Full {
                        name: l.policy.metadata.name.clone(),
                        what: "syscalls hooked by fentry (and no kprobes to take more)",
                        limit: plimits::FENTRY_SYSCALLS as u32,
                    });
                }
            }
        }
        Ok(plans)
    }

    /// Gives each raw tracepoint the slot of the `raw_tp_N` program serving it: the one it
    /// is attached to already, else a free one.
    fn plan_raw_tps(&self, l: &Loaded, plans: &mut [HookPlan]) -> Result<(), EngineError> {
        let mut pool = self.raw_tp_pool.clone();
        for a in plans.iter_mut().flat_map(|p| p.attach.iter_mut()) {
            let Attach::RawTp { event, key } = a else { continue };
            let slot = match pool.iter().position(|s| s.as_deref() == Some(event.as_str())) {
                Some(s) => s,
                None => {
                    let s = pool.iter().position(Option::is_none).ok_or_else(|| EngineError::Full {
                        name: l.policy.metadata.name.clone(),
                        what: "raw tracepoints hooked",
                        limit: plimits::RAW_TPS as u32,
                    })?;
                    pool[s] = Some(event.clone());
                    s
                }
            };
            *key = nightjar_common::RAW_TP_KEY | slot as u32;
        }
        Ok(())
    }

    /// Loads a policy: all its hooks, or none (on any failure the partial state is undone).
    pub fn add(&mut self, ebpf: &mut Ebpf, l: &Loaded) -> Result<PolicyStatus, EngineError> {
        let name = l.policy.metadata.name.clone();
        if self.policies.contains_key(&name) {
            return Err(EngineError::Exists(name));
        }
        let mut plans = self.plan(l)?;
        self.running = None;
        let n_bits = plans.iter().flat_map(|p| &p.strings).filter(|s| s.arg_cond.is_none()).count();
        // matchCapabilityChanges and matchNamespaceChanges compare with what exec_binmask
        // records at exec.
        let capchg = plans.iter().any(|p| p.conf.sels.iter().any(|s| s.capchg_op != 0 || s.nschg_op != 0));
        if n_bits > 0 || capchg {
            self.ensure_binmask(ebpf, &name)?;
        }
        if capchg && !self.record_caps {
            self.record_caps = true;
            self.sync_bin_count(ebpf)?;
        }
        if capchg {
            let procs = self.running.get_or_insert_with(super::running::processes);
            let n = super::running::seed_exec_state(ebpf, procs);
            tracing::debug!(policy = %name, seeded = n, "processes without an exec record: namespaces and capabilities of now recorded");
        }
        if plans.len() > self.free_hooks.len() {
            return Err(EngineError::Full { name, what: "hooks", limit: plimits::HOOKS });
        }
        if n_bits > self.free_bits.len() {
            return Err(EngineError::Full { name, what: "matchBinaries sets", limit: plimits::BIN_SETS });
        }
        if let Some(scope) = super::scope::Scope::of(l) {
            let bit = self.scopes.add(&name, scope).ok_or_else(|| EngineError::Full {
                name: name.clone(),
                what: "Kubernetes-scoped policies",
                limit: plimits::SCOPES,
            })?;
            for p in &mut plans {
                p.conf.scope = bit;
            }
            // The map first: a hook is only active once its scope's cgroups are known.
            if let Err(source) = self.scopes.sync(ebpf) {
                self.scopes.remove(&name);
                return Err(EngineError::Map { name, op: "SCOPES", source: Box::new(source) });
            }
        }
        let mut inst = Installed {
            status: PolicyStatus { name: name.clone(), source: l.source.clone(), hooks: Vec::new(), scope: None },
            hooks: Vec::new(),
            strings: Vec::new(),
            bits: Vec::new(),
            enforced: Vec::new(),
        };
        let res = self.install(ebpf, &name, plans, &mut inst).and_then(|()| self.install_enforcer(ebpf, l, &mut inst));
        match res {
            Ok(()) => {
                let st = inst.status.clone();
                for h in &st.hooks {
                    tracing::info!(policy = %name, hook = %h.function, backend = %h.backend, served_by = %h.served_by, "policy hook loaded");
                }
                crate::hooks::policy::init_policy_series(l);
                let st = PolicyStatus { scope: self.scopes.describe(&name), ..st };
                self.policies.insert(name, inst);
                Ok(st)
            }
            Err(e) => {
                self.uninstall(ebpf, &inst);
                Err(e)
            }
        }
    }

    fn install(
        &mut self,
        ebpf: &mut Ebpf,
        name: &str,
        plans: Vec<HookPlan>,
        inst: &mut Installed,
    ) -> Result<(), EngineError> {
        let map_err = |op: &'static str| {
            let name = name.to_owned();
            move |source| EngineError::Map { name: name.clone(), op, source: Box::new(source) }
        };
        for mut plan in plans {
            let hid = self.free_hooks.pop().ok_or(EngineError::Full {
                name: name.into(),
                what: "hooks",
                limit: plimits::HOOKS,
            })?;
            inst.hooks.push((hid, Vec::new()));
            plan.conf.policy = hid;
            // A reused id starts its kernel-side counts from zero.
            for counter in ["FILTERED", "RATE_LIMITED"] {
                if let Some(m) = ebpf.map_mut(counter) {
                    if let Ok(mut f) = aya::maps::PerCpuArray::<&mut MapData, u64>::try_from(m) {
                        if let Ok(n) = aya::util::nr_cpus() {
                            if let Ok(zero) = aya::maps::PerCpuValues::try_from(vec![0u64; n]) {
                                let _ = f.set(hid, zero, 0);
                            }
                        }
                    }
                }
            }
            // String conditions and matchBinaries sets.
            for sc in &plan.strings {
                self.install_strings(ebpf, name, sc, &mut plan.conf, inst)?;
            }
            self.sync_bin_count(ebpf)?;
            {
                let mut confs: Array<&mut MapData, HookConfig> =
                    Array::try_from(ebpf.map_mut("HOOK_CONF").ok_or(EngineError::Missing("HOOK_CONF"))?)
                        .map_err(map_err("HOOK_CONF"))?;
                confs.set(hid, plan.conf, 0).map_err(map_err("HOOK_CONF set"))?;
            }
            self.meta.insert(
                hid,
                HookMeta {
                    policy: name.to_owned(),
                    kind: plan.kind,
                    function: plan.function.clone(),
                    args: plan.args.clone(),
                    served_by: plan.served_by.clone(),
                    message: plan.message.clone(),
                    tags: plan.tags.clone(),
                    target: plan.target.clone(),
                    stacks: plan.conf.sels.iter().fold(0, |m, s| m | s.stack),
                    points: plan
                        .attach
                        .iter()
                        .filter_map(|a| match a {
                            Attach::Uprobe { symbol, offset, key, usdt: None, .. } => {
                                Some((*key, if symbol.is_empty() { format!("{offset:#x}") } else { symbol.clone() }))
                            }
                            _ => None,
                        })
                        .collect(),
                },
            );
            for a in &plan.attach {
                let key = a.key();
                let list = self.lists.entry(key).or_default();
                if list.len() >= plimits::HOOKS_PER_TP {
                    return Err(EngineError::Full {
                        name: name.into(),
                        what: "hooks on one tracepoint",
                        limit: plimits::HOOKS_PER_TP as u32,
                    });
                }
                list.push(hid);
                if let Some(h) = inst.hooks.last_mut() {
                    h.1.push(a.clone());
                }
                self.write_list(ebpf, key, name)?;
                self.ensure_attached(ebpf, a, name)?;
            }
            inst.status.hooks.push(HookStatus {
                id: hid,
                function: plan.function,
                backend: plan.backend,
                points: plan.attach.iter().map(Attach::point).collect(),
                served_by: plan.served_by,
                filtered: 0,
                rate_limited: 0,
            });
        }
        Ok(())
    }

    /// One string condition of a hook: its LPM entries, and its id in the condition (an
    /// argument's) or its matchBinaries / matchParentBinaries set (a bit of the engine's,
    /// written to BIN_SETS, with the running processes in it marked).
    fn install_strings(
        &mut self,
        ebpf: &mut Ebpf,
        name: &str,
        sc: &super::selectors::StrCond,
        conf: &mut HookConfig,
        inst: &mut Installed,
    ) -> Result<(), EngineError> {
        let map_err = |op: &'static str| {
            let name = name.to_owned();
            move |source| EngineError::Map { name: name.clone(), op, source: Box::new(source) }
        };
        let cond = self.next_cond;
        self.next_cond += 1;
        let entries = compile::string_entries(cond, sc.op, &sc.values);
        {
            let mut trie: LpmTrie<&mut MapData, StrData, u32> =
                LpmTrie::try_from(ebpf.map_mut("STRINGS").ok_or(EngineError::Missing("STRINGS"))?)
                    .map_err(map_err("STRINGS"))?;
            for (d, bits) in &entries {
                trie.insert(&Key::new(*bits, *d), cond, 0).map_err(map_err("STRINGS insert"))?;
                inst.strings.push((*d, *bits));
            }
        }
        let sel = &mut conf.sels[sc.selector];
        let Some(c) = sc.arg_cond else {
            let bit = self.free_bits.pop().ok_or(EngineError::Full {
                name: name.into(),
                what: "matchBinaries sets",
                limit: plimits::BIN_SETS,
            })?;
            inst.bits.push(bit);
            if sc.parent {
                sel.pbin_bit = bit as u8;
            } else {
                sel.bin_bit = bit as u8;
            }
            let mut sets: Array<&mut MapData, BinSet> =
                Array::try_from(ebpf.map_mut("BIN_SETS").ok_or(EngineError::Missing("BIN_SETS"))?)
                    .map_err(map_err("BIN_SETS"))?;
            sets.set(bit, compile::bin_set(cond, sc.op, sc.follow), 0).map_err(map_err("BIN_SETS set"))?;
            // One /proc walk per policy load serves all its sets.
            let procs = self.running.get_or_insert_with(super::running::processes);
            let n = super::running::mark(ebpf, procs, bit, sc.op, &sc.values, sc.follow);
            tracing::debug!(policy = %name, bit, running = n, "matchBinaries set: running processes marked");
            return Ok(());
        };
        sel.args[c].cond = cond;
        Ok(())
    }

    /// A policy with `enforcers:`: the enforcer program attached (with the first such
    /// policy) and the policy's (hook, syscall) keys in `ENFORCER_CALLS`.
    fn install_enforcer(&mut self, ebpf: &mut Ebpf, l: &Loaded, inst: &mut Installed) -> Result<(), EngineError> {
        use crate::hooks::enforcer;
        let Ok(nrs) = super::lists::enforcer_nrs(l) else { return Ok(()) };
        if nrs.is_empty() {
            return Ok(());
        }
        let name = &inst.status.name;
        if !self.links.contains_key(ENFORCER_LINK) {
            let link = enforcer::attach(ebpf).map_err(|source| EngineError::Attach {
                name: name.clone(),
                tracepoint: enforcer::POINT.into(),
                source: Box::new(source),
            })?;
            self.links.insert(ENFORCER_LINK.into(), Link::Tp(enforcer::PROGRAM, link));
        }
        let hids: Vec<u32> = inst.hooks.iter().map(|(h, _)| *h).collect();
        inst.enforced = enforcer::keys(&hids, &nrs);
        enforcer::set_calls(ebpf, &inst.enforced, true).map_err(|source| EngineError::Map {
            name: name.clone(),
            op: "ENFORCER_CALLS",
            source: Box::new(source),
        })?;
        let note = enforcer::served_by(&nrs);
        for h in &mut inst.status.hooks {
            h.served_by.push_str(&note);
        }
        Ok(())
    }

    /// Forgets a policy's enforcer keys; detaches the enforcer once no policy has any.
    fn uninstall_enforcer(&mut self, ebpf: &mut Ebpf, inst: &Installed) {
        if inst.enforced.is_empty() {
            return;
        }
        let _ = crate::hooks::enforcer::set_calls(ebpf, &inst.enforced, false);
        if self.policies.values().all(|p| p.enforced.is_empty()) {
            if let Some(link) = self.links.remove(ENFORCER_LINK) {
                self.detach_link(ebpf, link);
            }
        }
    }

    /// The matchBinaries mask program (sched_process_exec), attached with the first policy
    /// that uses matchBinaries and kept: it must run before `exec_policy`, so when the exec
    /// hooks are attached already it is attached again in front of them.
    fn ensure_binmask(&mut self, ebpf: &mut Ebpf, policy: &str) -> Result<(), EngineError> {
        if self.links.contains_key("binmask") {
            return Ok(());
        }
        let exec = self.links.remove("tracepoint:sched/sched_process_exec");
        let had_exec = exec.is_some();
        if let Some(l) = exec {
            self.detach_link(ebpf, l);
        }
        let err = |source| EngineError::Attach {
            name: policy.into(),
            tracepoint: "sched/sched_process_exec".into(),
            source: Box::new(source),
        };
        let prog: &mut TracePoint =
            ebpf.program_mut("exec_binmask").ok_or(EngineError::Missing("exec_binmask"))?.try_into().map_err(err)?;
        if prog.fd().is_err() {
            verified("exec_binmask", || prog.load()).map_err(err)?;
        }
        let link = Link::Tp("exec_binmask", prog.attach("sched", "sched_process_exec").map_err(err)?);
        self.links.insert("binmask".into(), link);
        if had_exec {
            self.ensure_attached(ebpf, &Attach::Exec, policy)?;
        }
        Ok(())
    }

    fn write_list(&mut self, ebpf: &mut Ebpf, key: u32, policy: &str) -> Result<(), EngineError> {
        let mut lists: BpfHashMap<&mut MapData, u32, HookList> =
            BpfHashMap::try_from(ebpf.map_mut("HOOK_LISTS").ok_or(EngineError::Missing("HOOK_LISTS"))?).map_err(
                |source| EngineError::Map { name: policy.into(), op: "HOOK_LISTS", source: Box::new(source) },
            )?;
        let ids = self.lists.get(&key).cloned().unwrap_or_default();
        if ids.is_empty() {
            let _ = lists.remove(&key);
            self.lists.remove(&key);
            return Ok(());
        }
        let mut l = HookList { ids: [u32::MAX; plimits::HOOKS_PER_TP], stacks: 0, count: 0 };
        for (i, id) in ids.iter().take(plimits::HOOKS_PER_TP).enumerate() {
            l.ids[i] = *id;
            l.stacks |= u32::from(self.meta.get(id).map_or(0, |m| m.stacks));
            l.count = i as u32 + 1;
        }
        lists.insert(key, l, 0).map_err(|source| EngineError::Map {
            name: policy.into(),
            op: "HOOK_LISTS insert",
            source: Box::new(source),
        })
    }

    fn sync_bin_count(&self, ebpf: &mut Ebpf) -> Result<(), EngineError> {
        // The kernel scans bits 0..count: count is one past the highest bit in use.
        let highest = (0..plimits::BIN_SETS).filter(|b| !self.free_bits.contains(b)).max().map(|b| b + 1).unwrap_or(0);
        // u32::MAX: no set to scan, but the capabilities to record.
        let highest = if highest == 0 && self.record_caps { u32::MAX } else { highest };
        let mut conf: Array<&mut MapData, u32> =
            Array::try_from(ebpf.map_mut("POLICY_CONF").ok_or(EngineError::Missing("POLICY_CONF"))?).map_err(
                |source| EngineError::Map { name: String::new(), op: "POLICY_CONF", source: Box::new(source) },
            )?;
        conf.set(0, highest, 0).map_err(|source| EngineError::Map {
            name: String::new(),
            op: "POLICY_CONF set",
            source: Box::new(source),
        })
    }

    fn ensure_attached(&mut self, ebpf: &mut Ebpf, a: &Attach, policy: &str) -> Result<(), EngineError> {
        let lk = link_key(a);
        if self.links.contains_key(&lk) {
            return Ok(());
        }
        let err =
            |source| EngineError::Attach { name: policy.into(), tracepoint: lk.clone(), source: Box::new(source) };
        let link = match a {
            Attach::Exec => {
                let prog: &mut TracePoint = ebpf
                    .program_mut("exec_policy")
                    .ok_or(EngineError::Missing("exec_policy"))?
                    .try_into()
                    .map_err(err)?;
                if prog.fd().is_err() {
                    verified("exec_policy", || prog.load()).map_err(err)?;
                }
                Link::Tp("exec_policy", prog.attach("sched", "sched_process_exec").map_err(err)?)
            }
            Attach::Tracepoint { category, name: tp, program, key } => {
                let prog: &mut TracePoint =
                    ebpf.program_mut(program).ok_or(EngineError::Missing("policy program"))?.try_into().map_err(err)?;
                if prog.fd().is_err() {
                    verified(program, || prog.load()).map_err(err)?;
                }
                if *program == "policy_tp" {
                    // The record cannot say which tracepoint it is: the cookie does (the
                    // key is the tracefs id).
                    let fd = prog.fd().map_err(err)?;
                    let link = crate::perf::attach_tracepoint(fd.as_fd(), *key, u64::from(*key)).map_err(|e| {
                        EngineError::Attach {
                            name: policy.into(),
                            tracepoint: lk.clone(),
                            source: Box::new(aya::programs::ProgramError::IOError(e)),
                        }
                    })?;
                    Link::TpCookie(link)
                } else {
                    Link::Tp(program, prog.attach(category, tp).map_err(err)?)
                }
            }
            Attach::Fentry { function, .. } => {
                let btf = self.btf.as_ref().ok_or(EngineError::Missing("kernel BTF (for fentry)"))?;
                let (program, slot) = match fentry_program(function) {
                    Some(p) => (p.to_owned(), None),
                    None => {
                        let slot = self
                            .fentry_pool
                            .iter()
                            .position(Option::is_none)
                            .ok_or(EngineError::Missing("a free fentry_sys program"))?;
                        (format!("fentry_sys_{slot}"), Some(slot))
                    }
                };
                let prog: &mut FEntry = ebpf
                    .program_mut(&program)
                    .ok_or(EngineError::Missing("fentry program"))?
                    .try_into()
                    .map_err(err)?;
                if prog.fd().is_err() {
                    verified(&program, || prog.load(function, btf)).map_err(err)?;
                }
                let link = prog.attach().map_err(err)?;
                if let Some(slot) = slot {
                    self.fentry_pool[slot] = Some(function.clone());
                }
                Link::Fentry(program, link, slot)
            }
            Attach::Kprobe { function, .. } => {
                let program = kprobe_program(function);
                let prog: &mut KProbe =
                    ebpf.program_mut(program).ok_or(EngineError::Missing("kprobe program"))?.try_into().map_err(err)?;
                if prog.fd().is_err() {
                    verified(program, || prog.load()).map_err(err)?;
                }
                Link::Kprobe(program, prog.attach(function, 0).map_err(err)?)
            }
            Attach::Lsm { hook, .. } => {
                let btf = self.btf.as_ref().ok_or(EngineError::Missing("kernel BTF (for BPF-LSM)"))?;
                let program = match hook.as_str() {
                    "file_open" => "lsm_file_open",
                    _ => "lsm_bprm_check",
                };
                let prog: &mut Lsm =
                    ebpf.program_mut(program).ok_or(EngineError::Missing("LSM program"))?.try_into().map_err(err)?;
                if prog.fd().is_err() {
                    verified(program, || prog.load(hook, btf)).map_err(err)?;
                }
                Link::Lsm(program, prog.attach().map_err(err)?)
            }
            Attach::Kfunc { function, ret, syscall, key } => {
                let ip = self.env.kernel.ksym(function).ok_or(EngineError::Missing("the function's address"))?;
                self.set_kfunc_keys(ebpf, function, ip, *ret, *syscall, *key, policy)?;
                // The entry probe runs entry hooks and saves the arguments for return
                // hooks: one per function, shared by both.
                self.acquire_kprobe_entry(ebpf, function).map_err(err)?;
                let link = if *ret {
                    let prog: &mut KProbe = ebpf
                        .program_mut("kretprobe_policy")
                        .ok_or(EngineError::Missing("kretprobe program"))?
                        .try_into()
                        .map_err(err)?;
                    if prog.fd().is_err() {
                        verified("kretprobe_policy", || prog.load()).map_err(err)?;
                    }
                    Some(prog.attach(function, 0).map_err(err)?)
                } else {
                    None
                };
                self.uprobe_keys.insert(link_key(a), *key);
                self.next_uprobe = self.next_uprobe.max(*key & 0xffff);
                Link::Kfunc { link, function: function.clone(), ip, ret: *ret }
            }
            Attach::RawTp { event, key } => {
                let slot = (*key & 0xff) as usize;
                let program = RAW_TP_PROGRAMS.get(slot).copied().ok_or(EngineError::Missing("raw_tp program"))?;
                let prog: &mut RawTracePoint =
                    ebpf.program_mut(program).ok_or(EngineError::Missing("raw_tp program"))?.try_into().map_err(err)?;
                if prog.fd().is_err() {
                    verified(program, || prog.load()).map_err(err)?;
                }
                let link = prog.attach(event).map_err(err)?;
                self.raw_tp_pool[slot] = Some(event.clone());
                Link::RawTp(slot, link)
            }
            Attach::Uprobe { path, symbol, offset, key, usdt } => {
                // A USDT site reads its arguments where its note says; a function, from the
                // argument registers.
                let program = if usdt.is_some() { "usdt_policy" } else { "uprobe_policy" };
                if let Some(spec) = usdt {
                    let mut specs: BpfHashMap<&mut MapData, u32, nightjar_common::UsdtSpec> =
                        BpfHashMap::try_from(ebpf.map_mut("USDT_SPECS").ok_or(EngineError::Missing("USDT_SPECS"))?)
                            .map_err(|source| EngineError::Map {
                                name: policy.into(),
                                op: "USDT_SPECS",
                                source: Box::new(source),
                            })?;
                    specs.insert(*key, *spec, 0).map_err(|source| EngineError::Map {
                        name: policy.into(),
                        op: "USDT_SPECS set",
                        source: Box::new(source),
                    })?;
                }
                let prog: &mut UProbe =
                    ebpf.program_mut(program).ok_or(EngineError::Missing("uprobe program"))?.try_into().map_err(err)?;
                if prog.fd().is_err() {
                    verified(program, || prog.load()).map_err(err)?;
                }
                let location = if symbol.is_empty() {
                    UProbeAttachLocation::from(*offset)
                } else {
                    UProbeAttachLocation::from(symbol.as_str())
                };
                let point = UProbeAttachPoint { location, cookie: Some(u64::from(*key)) };
                let link = prog.attach(point, path, UProbeScope::AllProcesses).map_err(err)?;
                self.uprobe_keys.insert(link_key(a), *key);
                self.next_uprobe = self.next_uprobe.max(*key & 0xffff);
                Link::Uprobe(program, link)
            }
        };
        self.links.insert(lk, link);
        Ok(())
    }

    /// Attaches `kprobe_policy` to `function` unless it is already (then counts one more user).
    fn acquire_kprobe_entry(&mut self, ebpf: &mut Ebpf, function: &str) -> Result<(), aya::programs::ProgramError> {
        if let Some((_, n)) = self.kprobe_entries.get_mut(function) {
            *n += 1;
            return Ok(());
        }
        let prog: &mut KProbe =
            ebpf.program_mut("kprobe_policy").ok_or(aya::programs::ProgramError::UnexpectedProgramType)?.try_into()?;
        if prog.fd().is_err() {
            verified("kprobe_policy", || prog.load())?;
        }
        let link = prog.attach(function, 0)?;
        self.kprobe_entries.insert(function.to_owned(), (link, 1));
        Ok(())
    }

    /// One user fewer of `function`'s entry kprobe; detached with the last.
    fn release_kprobe_entry(&mut self, ebpf: &mut Ebpf, function: &str) {
        let Some((_, n)) = self.kprobe_entries.get_mut(function) else { return };
        *n -= 1;
        if *n > 0 {
            return;
        }
        if let Some((link, _)) = self.kprobe_entries.remove(function) {
            if let Some(Ok(prog)) = ebpf.program_mut("kprobe_policy").map(<&mut KProbe>::try_from) {
                let _ = prog.detach(link);
            }
        }
    }

    /// Sets the entry or return key of `function` (0 clears it) in `KFUNC_KEYS`, under its
    /// address and the address past its `endbr64` (where `bpf_get_func_ip` may point on
    /// kernels with IBT).
    #[allow(clippy::too_many_arguments)]
    fn set_kfunc_keys(
        &mut self,
        ebpf: &mut Ebpf,
        function: &str,
        ip: u64,
        ret: bool,
        syscall: bool,
        key: u32,
        policy: &str,
    ) -> Result<(), EngineError> {
        let entry = self.kfunc_keys.entry(function.to_owned()).or_default();
        if ret {
            entry.ret = key;
        } else {
            entry.entry = key;
        }
        if key != 0 && syscall {
            entry.flags |= nightjar_common::kfunc_flags::SYSCALL;
        }
        let keys = *entry;
        let map_err = |op: &'static str| {
            let name = policy.to_owned();
            move |source| EngineError::Map { name: name.clone(), op, source: Box::new(source) }
        };
        let mut m: BpfHashMap<&mut MapData, u64, KfuncKeys> =
            BpfHashMap::try_from(ebpf.map_mut("KFUNC_KEYS").ok_or(EngineError::Missing("KFUNC_KEYS"))?)
                .map_err(map_err("KFUNC_KEYS"))?;
        for addr in [ip, ip + 4] {
            if keys.entry == 0 && keys.ret == 0 {
                let _ = m.remove(&addr);
            } else {
                m.insert(addr, keys, 0).map_err(map_err("KFUNC_KEYS insert"))?;
            }
        }
        if keys.entry == 0 && keys.ret == 0 {
            self.kfunc_keys.remove(function);
        }
        Ok(())
    }

    /// Detaches a hook point nobody uses anymore (and frees its fentry pool slot).
    fn detach(&mut self, ebpf: &mut Ebpf, a: &Attach) {
        let Some(link) = self.links.remove(&link_key(a)) else { return };
        if let Link::Uprobe(..) | Link::Kfunc { .. } = link {
            self.uprobe_keys.remove(&link_key(a));
        }
        self.detach_link(ebpf, link);
    }

    /// Detaches one link (and frees what it held: a pool slot, function keys).
    fn detach_link(&mut self, ebpf: &mut Ebpf, link: Link) {
        match link {
            Link::TpCookie(link) => drop(link),
            Link::Tp(program, id) => {
                if let Some(Ok(prog)) = ebpf.program_mut(program).map(<&mut TracePoint>::try_from) {
                    let _ = prog.detach(id);
                }
            }
            Link::Fentry(program, id, slot) => {
                if let Some(Ok(prog)) = ebpf.program_mut(&program).map(<&mut FEntry>::try_from) {
                    let _ = prog.detach(id);
                    if let Some(slot) = slot {
                        // A pool program is bound to its function: unload it for the next one.
                        let _ = prog.unload();
                        self.fentry_pool[slot] = None;
                    }
                }
            }
            Link::Kprobe(program, id) => {
                if let Some(Ok(prog)) = ebpf.program_mut(program).map(<&mut KProbe>::try_from) {
                    let _ = prog.detach(id);
                }
            }
            Link::Lsm(program, id) => {
                if let Some(Ok(prog)) = ebpf.program_mut(program).map(<&mut Lsm>::try_from) {
                    let _ = prog.detach(id);
                }
            }
            Link::Kfunc { link, function, ip, ret } => {
                if let Some(link) = link {
                    if let Some(Ok(prog)) = ebpf.program_mut("kretprobe_policy").map(<&mut KProbe>::try_from) {
                        let _ = prog.detach(link);
                    }
                }
                let _ = self.set_kfunc_keys(ebpf, &function, ip, ret, false, 0, "");
                self.release_kprobe_entry(ebpf, &function);
            }
            Link::RawTp(slot, id) => {
                if let Some(Ok(prog)) = ebpf.program_mut(RAW_TP_PROGRAMS[slot]).map(<&mut RawTracePoint>::try_from) {
                    let _ = prog.detach(id);
                }
                self.raw_tp_pool[slot] = None;
            }
            Link::Uprobe(program, id) => {
                if let Some(Ok(prog)) = ebpf.program_mut(program).map(<&mut UProbe>::try_from) {
                    let _ = prog.detach(id);
                }
            }
        }
    }

    /// Removes a policy's hooks, strings and bits; detaches tracepoints nobody uses anymore.
    pub fn delete(&mut self, ebpf: &mut Ebpf, name: &str) -> Result<PolicyStatus, EngineError> {
        let inst = self.policies.remove(name).ok_or_else(|| EngineError::NotFound(name.into()))?;
        self.uninstall(ebpf, &inst);
        self.sync_scopes(ebpf);
        tracing::info!(policy = %name, "policy deleted");
        Ok(inst.status)
    }

    fn uninstall(&mut self, ebpf: &mut Ebpf, inst: &Installed) {
        self.uninstall_enforcer(ebpf, inst);
        let name = inst.status.name.clone();
        self.scopes.remove(&name);
        for (hid, attaches) in &inst.hooks {
            if let Some(m) = ebpf.map_mut("HOOK_CONF") {
                if let Ok(mut confs) = Array::<&mut MapData, HookConfig>::try_from(m) {
                    let _ = confs.set(*hid, HookConfig::default(), 0);
                }
            }
            for a in attaches {
                let key = a.key();
                if let Some(l) = self.lists.get_mut(&key) {
                    l.retain(|h| h != hid);
                }
                let _ = self.write_list(ebpf, key, &name);
                if !self.lists.contains_key(&key) {
                    self.detach(ebpf, a);
                }
            }
            // The meta stays until the id is reused, so records already in the ring buffer
            // are still reported; freed ids go to the back of the queue, reused last.
            self.free_hooks.insert(0, *hid);
        }
        if let Some(m) = ebpf.map_mut("STRINGS") {
            if let Ok(mut trie) = LpmTrie::<&mut MapData, StrData, u32>::try_from(m) {
                for (d, bits) in &inst.strings {
                    let _ = trie.remove(&Key::new(*bits, *d));
                }
            }
        }
        for bit in &inst.bits {
            if let Some(m) = ebpf.map_mut("BIN_SETS") {
                if let Ok(mut sets) = Array::<&mut MapData, BinSet>::try_from(m) {
                    let _ = sets.set(*bit, BinSet::default(), 0);
                }
            }
            self.free_bits.push(*bit);
        }
        clear_proc_bits(ebpf, inst.bits.iter().fold(0u64, |m, b| m | 1u64 << (b & 63)));
        let _ = self.sync_bin_count(ebpf);
    }
}

/// Clears freed matchBinaries bits from every running process's mask: a policy that
/// reuses the bit must not find processes in its set (a followChildren set would pass the
/// stale bit on to their children).
fn clear_proc_bits(ebpf: &mut Ebpf, mask: u64) {
    const BPF_EXIST: u64 = 2; // update only: a process that exited meanwhile stays gone
    let Some(m) = ebpf.map_mut("PROCS") else { return };
    let Ok(mut procs) = BpfHashMap::<&mut MapData, u32, ProcState>::try_from(m) else { return };
    let stale: Vec<(u32, ProcState)> =
        procs.iter().filter_map(Result::ok).filter(|(_, s)| s.binmask & mask != 0).collect();
    for (pid, mut st) in stale {
        st.binmask &= !mask;
        let _ = procs.insert(pid, st, BPF_EXIST);
    }
}
