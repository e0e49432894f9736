//! The loaded policies and their kernel state: ids, map entries, attached tracepoints.
//! Policies are added and removed at runtime; a policy is loaded whole or not at all, and
//! removing one never disturbs the others.
use std::collections::{BTreeMap, HashMap};

use aya::{
    maps::{lpm_trie::Key, Array, HashMap as BpfHashMap, LpmTrie, MapData},
    programs::{trace_point::TracePointLinkId, TracePoint},
    Ebpf,
};
use nightjar_common::{plimits, BinSet, HookConfig, HookList, StrData, EXEC_HOOKS_KEY};
use serde::Serialize;

use super::compile::{self, ArgMeta, Attach, Env, HookKind, HookPlan};
use super::Loaded;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Policy(#[from] Box<pipeline::config::ConfigError>),
    #[error("policy {0:?} is already loaded; delete it first")]
    Exists(String),
    #[error("no policy named {0:?} is loaded")]
    NotFound(String),
    #[error("policy {name:?}: the kernel limit of {limit} {what} is reached")]
    Full { name: String, what: &'static str, limit: u32 },
    #[error("policy {name:?}: {op}: {source}")]
    Map { name: String, op: &'static str, source: Box<aya::maps::MapError> },
    #[error("policy {name:?}: attaching {tracepoint}: {source}")]
    Attach { name: String, tracepoint: String, source: Box<aya::programs::ProgramError> },
    #[error("eBPF program or map {0} is missing from the object")]
    Missing(&'static str),
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
}

/// A loaded policy, for `nightjar policy list` and `status`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub name: String,
    pub source: String,
    pub hooks: Vec<HookStatus>,
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
}

struct Installed {
    status: PolicyStatus,
    hooks: Vec<(u32, Vec<Attach>)>,
    strings: Vec<(StrData, u32)>,
    bits: Vec<u32>,
}

pub struct PolicyEngine {
    env: Env,
    policies: BTreeMap<String, Installed>,
    meta: HashMap<u32, HookMeta>,
    lists: HashMap<u32, Vec<u32>>,
    links: HashMap<(String, String), (&'static str, TracePointLinkId)>,
    free_hooks: Vec<u32>,
    free_bits: Vec<u32>,
    next_cond: u32,
}

impl PolicyEngine {
    pub fn new(env: Env) -> Self {
        PolicyEngine {
            env,
            policies: BTreeMap::new(),
            meta: HashMap::new(),
            lists: HashMap::new(),
            links: HashMap::new(),
            free_hooks: (0..plimits::HOOKS).rev().collect(),
            free_bits: (0..plimits::BIN_SETS).rev().collect(),
            next_cond: 1,
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
        self.policies.values().map(|p| p.status.clone()).collect()
    }

    /// Plans the policy on this kernel (without loading it): the located errors and the
    /// backend of each hook.
    pub fn plan(&self, l: &Loaded) -> Result<Vec<HookPlan>, EngineError> {
        compile::plan(l, &self.env).map_err(|e| EngineError::Policy(Box::new(e)))
    }

    /// Loads a policy: all its hooks, or none (on any failure the partial state is undone).
    pub fn add(&mut self, ebpf: &mut Ebpf, l: &Loaded) -> Result<PolicyStatus, EngineError> {
        let name = l.policy.metadata.name.clone();
        if self.policies.contains_key(&name) {
            return Err(EngineError::Exists(name));
        }
        let plans = self.plan(l)?;
        let n_bits = plans.iter().flat_map(|p| &p.strings).filter(|s| s.arg_cond.is_none()).count();
        if plans.len() > self.free_hooks.len() {
            return Err(EngineError::Full { name, what: "hooks", limit: plimits::HOOKS });
        }
        if n_bits > self.free_bits.len() {
            return Err(EngineError::Full { name, what: "matchBinaries sets", limit: plimits::BIN_SETS });
        }
        let mut inst = Installed {
            status: PolicyStatus { name: name.clone(), source: l.source.clone(), hooks: Vec::new() },
            hooks: Vec::new(),
            strings: Vec::new(),
            bits: Vec::new(),
        };
        let res = self.install(ebpf, &name, plans, &mut inst);
        match res {
            Ok(()) => {
                let st = inst.status.clone();
                for h in &st.hooks {
                    tracing::info!(policy = %name, hook = %h.function, backend = %h.backend, served_by = %h.served_by, "policy hook loaded");
                }
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
            // A reused id starts its kernel-side "filtered" count from zero.
            if let Some(m) = ebpf.map_mut("FILTERED") {
                if let Ok(mut f) = aya::maps::PerCpuArray::<&mut MapData, u64>::try_from(m) {
                    if let Ok(n) = aya::util::nr_cpus() {
                        if let Ok(zero) = aya::maps::PerCpuValues::try_from(vec![0u64; n]) {
                            let _ = f.set(hid, zero, 0);
                        }
                    }
                }
            }
            // String conditions and matchBinaries sets.
            for sc in &plan.strings {
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
                let sel = &mut plan.conf.sels[sc.selector];
                match sc.arg_cond {
                    Some(c) => sel.args[c].cond = cond,
                    None => {
                        let bit = self.free_bits.pop().ok_or(EngineError::Full {
                            name: name.into(),
                            what: "matchBinaries sets",
                            limit: plimits::BIN_SETS,
                        })?;
                        inst.bits.push(bit);
                        sel.bin_bit = bit as u8;
                        let mut sets: Array<&mut MapData, BinSet> =
                            Array::try_from(ebpf.map_mut("BIN_SETS").ok_or(EngineError::Missing("BIN_SETS"))?)
                                .map_err(map_err("BIN_SETS"))?;
                        sets.set(bit, compile::bin_set(cond, sc.op), 0).map_err(map_err("BIN_SETS set"))?;
                    }
                }
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
                },
            );
            for a in &plan.attach {
                let key = match a {
                    Attach::Exec => EXEC_HOOKS_KEY,
                    Attach::Tracepoint { key, .. } => *key,
                };
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
                if let Attach::Tracepoint { category, name: tp, program, .. } = a {
                    self.ensure_attached(ebpf, program, category, tp, name)?;
                }
            }
            inst.status.hooks.push(HookStatus {
                id: hid,
                function: plan.function,
                backend: plan.backend,
                points: plan.attach.iter().map(Attach::point).collect(),
                served_by: plan.served_by,
            });
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
        let mut l = HookList { ids: [u32::MAX; plimits::HOOKS_PER_TP] };
        for (i, id) in ids.iter().take(plimits::HOOKS_PER_TP).enumerate() {
            l.ids[i] = *id;
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

    fn ensure_attached(
        &mut self,
        ebpf: &mut Ebpf,
        program: &'static str,
        category: &str,
        tp: &str,
        policy: &str,
    ) -> Result<(), EngineError> {
        let k = (category.to_owned(), tp.to_owned());
        if self.links.contains_key(&k) {
            return Ok(());
        }
        let prog: &mut TracePoint =
            ebpf.program_mut(program).ok_or(EngineError::Missing("policy program"))?.try_into().map_err(|source| {
                EngineError::Attach {
                    name: policy.into(),
                    tracepoint: format!("{category}:{tp}"),
                    source: Box::new(source),
                }
            })?;
        let link = prog.attach(category, tp).map_err(|source| EngineError::Attach {
            name: policy.into(),
            tracepoint: format!("{category}:{tp}"),
            source: Box::new(source),
        })?;
        self.links.insert(k, (program, link));
        Ok(())
    }

    /// Removes a policy's hooks, strings and bits; detaches tracepoints nobody uses anymore.
    pub fn delete(&mut self, ebpf: &mut Ebpf, name: &str) -> Result<PolicyStatus, EngineError> {
        let inst = self.policies.remove(name).ok_or_else(|| EngineError::NotFound(name.into()))?;
        self.uninstall(ebpf, &inst);
        tracing::info!(policy = %name, "policy deleted");
        Ok(inst.status)
    }

    fn uninstall(&mut self, ebpf: &mut Ebpf, inst: &Installed) {
        let name = inst.status.name.clone();
        for (hid, attaches) in &inst.hooks {
            if let Some(m) = ebpf.map_mut("HOOK_CONF") {
                if let Ok(mut confs) = Array::<&mut MapData, HookConfig>::try_from(m) {
                    let _ = confs.set(*hid, HookConfig::default(), 0);
                }
            }
            for a in attaches {
                let key = match a {
                    Attach::Exec => EXEC_HOOKS_KEY,
                    Attach::Tracepoint { key, .. } => *key,
                };
                if let Some(l) = self.lists.get_mut(&key) {
                    l.retain(|h| h != hid);
                }
                let _ = self.write_list(ebpf, key, &name);
                if let Attach::Tracepoint { category, name: tp, key, .. } = a {
                    if !self.lists.contains_key(key) {
                        if let Some((program, link)) = self.links.remove(&(category.clone(), tp.clone())) {
                            if let Some(Ok(prog)) = ebpf.program_mut(program).map(<&mut TracePoint>::try_from) {
                                let _ = prog.detach(link);
                            }
                        }
                    }
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
        let _ = self.sync_bin_count(ebpf);
    }
}
