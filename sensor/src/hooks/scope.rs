//! User side of `sensor-bpf/src/scope.rs`: keeps the kernel's `SCOPES` map (container
//! cgroup id → the policy scopes that admit it) in step with the loaded scopes, this
//! node's container cgroups (a walk of the cgroup v2 tree) and its pods (from the
//! Kubernetes API, handed in by the agent).
//!
//! A container started after the last walk is in no scope until the next one (each
//! policy change, each new pod list, and every [`RESCAN`] while a scope is loaded): like
//! Tetragon without its OCI hook, best effort for the first moments of a container.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData},
    Ebpf,
};
use nightjar_common::{plimits, SCOPE_HOST_KEY};

use crate::policy::scope::{PodMeta, Scope};

/// How often the cgroup tree is walked again while some scope is loaded.
pub const RESCAN: Duration = Duration::from_secs(2);
/// Deepest cgroup looked at below the root (kubepods trees are 4-5 deep).
const MAX_DEPTH: usize = 10;

/// One container cgroup of this node.
#[derive(Debug, Clone)]
struct Cgroup {
    id: u64,
    container: String,
    /// The pod's uid when the cgroup is under kubepods.
    pod_uid: Option<String>,
}

pub struct Scopes {
    /// By bit: the policy and its scope.
    slots: Vec<Option<(String, Scope)>>,
    pods: Vec<PodMeta>,
    /// What the map holds now.
    written: HashMap<u64, u64>,
    root: Option<PathBuf>,
}

impl Default for Scopes {
    fn default() -> Self {
        Self::new()
    }
}

impl Scopes {
    pub fn new() -> Self {
        Scopes {
            slots: vec![None; plimits::SCOPES as usize],
            pods: Vec::new(),
            written: HashMap::new(),
            root: cgroup2_root(),
        }
    }

    /// Takes a bit for `policy`'s scope: the `HookConfig::scope` of its hooks (bit + 1).
    pub fn add(&mut self, policy: &str, scope: Scope) -> Option<u8> {
        let i = self.slots.iter().position(Option::is_none)?;
        self.slots[i] = Some((policy.to_owned(), scope));
        Some(i as u8 + 1)
    }

    pub fn remove(&mut self, policy: &str) {
        for s in &mut self.slots {
            if s.as_ref().is_some_and(|(p, _)| p == policy) {
                *s = None;
            }
        }
    }

    pub fn any(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }

    pub fn set_pods(&mut self, pods: Vec<PodMeta>) {
        self.pods = pods;
    }

    /// `policy`'s scope and how many container cgroups it admits now, for `status`.
    pub fn describe(&self, policy: &str) -> Option<String> {
        let (i, (_, s)) =
            self.slots.iter().enumerate().find_map(|(i, s)| s.as_ref().filter(|(p, _)| p == policy).map(|s| (i, s)))?;
        let n = self.written.iter().filter(|(k, m)| **k != SCOPE_HOST_KEY && (**m >> i) & 1 == 1).count();
        Some(format!("{}; {n} container cgroup(s) admitted", s.describe()))
    }

    /// Walks the cgroups, computes every mask and writes what changed into `SCOPES`.
    pub fn sync(&mut self, ebpf: &mut Ebpf) -> Result<(), aya::maps::MapError> {
        let want = if self.any() { self.masks(&self.walk()) } else { HashMap::new() };
        let Some(m) = ebpf.map_mut("SCOPES") else { return Ok(()) };
        let mut map = BpfHashMap::<&mut MapData, u64, u64>::try_from(m)?;
        for k in self.written.keys() {
            if !want.contains_key(k) {
                let _ = map.remove(k);
            }
        }
        let mut written = HashMap::with_capacity(want.len());
        for (k, v) in want {
            if self.written.get(&k) != Some(&v) {
                if let Err(e) = map.insert(k, v, 0) {
                    tracing::warn!(cgroup = k, error = %e, "scope map full: this container is in no policy scope");
                    continue;
                }
            }
            written.insert(k, v);
        }
        self.written = written;
        Ok(())
    }

    /// The mask of every container cgroup (0 when no scope admits it) and the host's.
    fn masks(&self, cgroups: &[Cgroup]) -> HashMap<u64, u64> {
        let by_container: HashMap<&str, (&PodMeta, &str)> = self
            .pods
            .iter()
            .flat_map(|p| p.containers.iter().map(move |(id, name)| (id.as_str(), (p, name.as_str()))))
            .collect();
        let by_uid: HashMap<&str, &PodMeta> = self.pods.iter().map(|p| (p.uid.as_str(), p)).collect();
        let mask_of = |admits: &dyn Fn(&Scope) -> bool| {
            self.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.as_ref().is_some_and(|(_, s)| admits(s)))
                .fold(0u64, |m, (i, _)| m | 1 << i)
        };
        let mut out: HashMap<u64, u64> = cgroups
            .iter()
            .map(|c| {
                let mask = match (by_container.get(c.container.as_str()), &c.pod_uid) {
                    (Some((pod, name)), _) => mask_of(&|s| s.admits(Some(pod), Some(name))),
                    (None, Some(uid)) => match by_uid.get(uid.as_str()) {
                        Some(pod) => mask_of(&|s| s.admits(Some(pod), None)),
                        None => mask_of(&|s| s.admits(None, None)),
                    },
                    // A container outside Kubernetes: no scope's pod.
                    (None, None) => 0,
                };
                (c.id, mask)
            })
            .collect();
        out.insert(SCOPE_HOST_KEY, mask_of(&|s| s.host));
        out
    }

    /// Every container cgroup under the cgroup v2 root.
    fn walk(&self) -> Vec<Cgroup> {
        let mut out = Vec::new();
        if let Some(root) = &self.root {
            walk_dir(root, "", 0, &mut out);
        }
        out
    }
}

fn walk_dir(dir: &Path, rel: &str, depth: usize, out: &mut Vec<Cgroup>) {
    if out.len() >= plimits::SCOPE_CGROUPS as usize || depth > MAX_DEPTH {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = e.file_name();
        let rel = format!("{rel}/{}", name.to_string_lossy());
        let path = e.path();
        if let Some(c) = crate::container::from_cgroup_path(&rel) {
            if let Ok(md) = std::fs::metadata(&path) {
                out.push(Cgroup { id: md.ino(), container: c.bare_id, pod_uid: c.pod_uid });
            }
        }
        walk_dir(&path, &rel, depth + 1, out);
    }
}

/// The host's cgroup v2 tree: through /proc/1/root when the agent runs in a container
/// with the host's pids (its own /sys/fs/cgroup is then only its own cgroup namespace),
/// else where this process sees cgroup2 mounted.
fn cgroup2_root() -> Option<PathBuf> {
    [("/proc/1/mountinfo", "/proc/1/root"), ("/proc/self/mountinfo", "/")].into_iter().find_map(|(info, root)| {
        let info = std::fs::read_to_string(info).ok()?;
        let mount = info.lines().find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            post.starts_with("cgroup2 ").then(|| pre.split_whitespace().nth(4)).flatten()
        })?;
        let dir = Path::new(root).join(mount.trim_start_matches('/'));
        std::fs::read_dir(&dir).is_ok().then_some(dir)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(yaml: &str, host: bool) -> Scope {
        Scope { namespace: None, pods: Some(serde_norway::from_str(yaml).unwrap()), containers: None, host }
    }

    #[test]
    fn masks_join_cgroups_to_pods_by_container_then_by_pod_uid() {
        let mut s = Scopes::new();
        assert_eq!(s.add("web", scope("matchLabels: {app: web}", false)), Some(1));
        assert_eq!(s.add("all-pods", scope("{}", true)), Some(2));
        s.set_pods(vec![PodMeta {
            uid: "u1".into(),
            namespace: "shop".into(),
            labels: [("app".to_owned(), "web".to_owned())].into(),
            containers: vec![("c1".into(), "main".into())],
            ..Default::default()
        }]);
        let cg = |id, container: &str, pod: Option<&str>| Cgroup {
            id,
            container: container.into(),
            pod_uid: pod.map(str::to_owned),
        };
        let m = s.masks(&[
            cg(10, "c1", Some("u1")),
            cg(11, "c2", Some("u1")),
            cg(12, "c3", Some("u9")),
            cg(13, "d1", None),
        ]);
        assert_eq!(m[&10], 0b11, "listed container of a web pod");
        assert_eq!(m[&11], 0b11, "a container of the pod not in its status yet: by pod uid");
        assert_eq!(m[&12], 0b10, "a pod not listed yet: only podSelector {{}}");
        assert_eq!(m[&13], 0, "a container outside Kubernetes");
        assert_eq!(m[&SCOPE_HOST_KEY], 0b10, "hostSelector {{}}");
        s.remove("web");
        assert_eq!(s.add("next", scope("{}", false)), Some(1), "a freed bit is reused");
    }
}
