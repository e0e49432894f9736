//! Enrichment: node name, user and group names (`/etc/passwd`, `/etc/group`, cached), and
//! pod identity. The sensor fills `pod.container.id` and the pod uid from the cgroup path;
//! in a cluster the pod's name, namespace, labels, workload and container name/image come
//! from the API server's pod list (see [`super::k8s`]). Ancestors are the sensor's business.
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Named;

use super::{
    k8s::{self, K8sConfig, PodCache, PodIndex},
    Context, Out, Stage, StageError,
};
use crate::{
    event::{Container, Image, Origin, Pod, Process, SharedProcess},
    time::Timestamp,
    Event,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    pub enabled: bool,
    /// Add `user.name` and `group.name` to processes from the files below.
    pub user_names: bool,
    pub passwd_path: PathBuf,
    pub group_path: PathBuf,
    /// Seconds between checks of the files for changes.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1, 86400>")]
    pub names_refresh_secs: u64,
    /// Most names kept per file.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1, 1048576>")]
    pub names_max: usize,
    pub kubernetes: K8sConfig,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            enabled: true,
            user_names: true,
            passwd_path: "/etc/passwd".into(),
            group_path: "/etc/group".into(),
            names_refresh_secs: 30,
            names_max: 65536,
            kubernetes: K8sConfig::default(),
        }
    }
}

pub struct Enrich {
    node: String,
    users: Option<(super::users::NameFile, super::users::NameFile)>,
    pods: Option<PodCache>,
    /// The pod cache as a feed for other readers (set when a refresher runs).
    feed: Option<k8s::PodFeed>,
    /// Shared processes already enriched: the sensor gives every event of an execution the
    /// same [`SharedProcess`], so it is copied and enriched once and the enriched one (with
    /// its JSON, encoded once) goes into each of its events. Keyed by the input's address,
    /// which the kept input holds; emptied at each tick (so a name or pod that appears is
    /// used within [`MEMO_SECS`]) and when full.
    memo: HashMap<usize, (SharedProcess, SharedProcess)>,
}

/// Most shared processes remembered as enriched.
const MEMO_MAX: usize = 4096;
/// Seconds an enriched shared process is reused before it is enriched again.
const MEMO_SECS: u64 = 5;

impl Enrich {
    /// Builds the stage and, in a cluster, the pod-list refresher to spawn with it.
    pub fn new(cfg: &EnrichConfig, ctx: &Context) -> Result<(Self, Option<tokio::task::JoinHandle<()>>), StageError> {
        let target = k8s::detect(&cfg.kubernetes, |k| std::env::var(k).ok())?;
        let (pods, task, feed) = match target {
            Some(t) => {
                let cache: PodCache = Arc::new(RwLock::new(PodIndex::default()));
                tracing::info!(host = %t.host, "pod metadata from the Kubernetes API server");
                let (refreshed_tx, refreshed) = tokio::sync::watch::channel(0);
                let task = k8s::spawn_refresher(
                    t,
                    ctx.node_name.clone(),
                    cache.clone(),
                    Duration::from_secs(cfg.kubernetes.refresh_secs),
                    cfg.kubernetes.max_pods,
                    refreshed_tx,
                );
                let feed = k8s::PodFeed { cache: cache.clone(), refreshed };
                (Some(cache), Some(task), Some(feed))
            }
            None => (None, None, None),
        };
        let mut s = Self::with_pods(cfg, ctx, pods);
        s.feed = feed;
        Ok((s, task))
    }

    /// The pod cache and its refresh counter, when pods come from the API server.
    pub fn pod_feed(&self) -> Option<k8s::PodFeed> {
        self.feed.clone()
    }

    /// The stage over a given pod cache (tests, or none).
    pub fn with_pods(cfg: &EnrichConfig, ctx: &Context, pods: Option<PodCache>) -> Self {
        let refresh = Duration::from_secs(cfg.names_refresh_secs);
        let users = cfg.user_names.then(|| {
            let mut u = super::users::NameFile::new(&cfg.passwd_path, cfg.names_max, refresh);
            let mut g = super::users::NameFile::new(&cfg.group_path, cfg.names_max, refresh);
            let now = Instant::now();
            u.refresh(now);
            g.refresh(now);
            (u, g)
        });
        Enrich { node: ctx.node_name.clone(), users, pods, feed: None, memo: HashMap::new() }
    }

    /// Enriches one process of an event: in place when no other event holds it, else once
    /// per shared process (see [`Enrich::memo`]).
    fn enrich_shared(&mut self, p: &mut SharedProcess, pods: Option<&PodIndex>) {
        if !p.is_shared() {
            self.enrich_process(p.make_mut(), pods);
            return;
        }
        let key = p.as_ptr() as usize;
        if let Some((_, done)) = self.memo.get(&key) {
            *p = done.clone();
            return;
        }
        let input = p.clone();
        let mut copy = Process::clone(p);
        self.enrich_process(&mut copy, pods);
        *p = SharedProcess::new(copy);
        if self.memo.len() >= MEMO_MAX {
            self.memo.clear();
        }
        self.memo.insert(key, (input, p.clone()));
    }

    fn enrich_process(&self, p: &mut Process, pods: Option<&PodIndex>) {
        if let Some((users, groups)) = &self.users {
            if p.user.is_none() {
                if let Some(name) = p.uid.and_then(|u| users.name(u)) {
                    p.user = Some(Named { name: Some(name.to_owned()), ..Default::default() });
                }
            }
            if p.group.is_none() {
                let gid = p.process_credentials.as_ref().and_then(|c| c.gid);
                if let Some(name) = gid.and_then(|g| groups.name(g)) {
                    p.group = Some(Named { name: Some(name.to_owned()), ..Default::default() });
                }
            }
        }
        if let (Some(ix), Some(pod)) = (pods, p.pod.as_mut()) {
            let cid = pod.container.as_ref().and_then(|c| c.id.as_deref()).map(k8s::bare_container_id);
            let uid = pod.extra.get("uid").and_then(Value::as_str);
            let info = uid.and_then(|u| ix.by_uid.get(u)).or_else(|| cid.and_then(|c| ix.by_container.get(c)));
            if let Some(info) = info {
                let cinfo = cid.and_then(|c| info.containers.get(c)).cloned();
                fill_pod(pod, info, cinfo.as_ref(), p.binary.as_deref(), p.arguments.as_deref());
            }
        }
    }
}

fn fill_pod(
    pod: &mut Pod,
    info: &k8s::PodInfo,
    c: Option<&k8s::ContainerInfo>,
    binary: Option<&str>,
    args: Option<&str>,
) {
    pod.name.get_or_insert_with(|| info.name.clone());
    pod.namespace.get_or_insert_with(|| info.namespace.clone());
    if !info.labels.is_empty() {
        pod.pod_labels.get_or_insert_with(|| info.labels.clone());
    }
    if pod.workload.is_none() {
        pod.workload = info.workload.clone();
    }
    if pod.workload_kind.is_none() {
        pod.workload_kind = info.workload_kind.clone();
    }
    let Some(c) = c else { return };
    let container = pod.container.get_or_insert_with(Container::default);
    container.name.get_or_insert_with(|| c.name.clone());
    if container.image.is_none() && (c.image.is_some() || c.image_id.is_some()) {
        container.image = Some(Image { id: c.image_id.clone(), name: c.image.clone(), ..Default::default() });
    }
    if container.start_time.is_none() {
        container.start_time = c.started_at.as_deref().and_then(|t| Timestamp::parse(t).ok());
    }
    let probe = binary.is_some_and(|b| c.exec_probes.iter().any(|cmd| is_probe(cmd, b, args.unwrap_or_default())));
    container.extra.insert("maybe_exec_probe".into(), Value::Bool(probe));
}

/// Whether `binary args` is the probe command `cmd` (the command may name the binary by
/// its base name, resolved through PATH).
fn is_probe(cmd: &[String], binary: &str, args: &str) -> bool {
    let Some((first, rest)) = cmd.split_first() else { return false };
    let bin_ok = binary == first || (!first.contains('/') && binary.rsplit('/').next() == Some(first.as_str()));
    bin_ok && rest.join(" ") == args
}

impl Stage for Enrich {
    fn name(&self) -> &'static str {
        "enrich"
    }

    fn process(&mut self, mut ev: Event, _now: Instant, out: &mut Out) {
        // Another exporter's event says what its host knew: this host's node name, users
        // and pods are not its facts (the tail source marks such events).
        if ev.origin == Origin::Received {
            out.pass(ev);
            return;
        }
        if ev.node_name.is_none() {
            ev.node_name = Some(self.node.clone());
        }
        if self.users.is_none() && self.pods.is_none() {
            out.pass(ev);
            return;
        }
        let cache = self.pods.clone();
        let guard = cache.as_ref().and_then(|c| c.read().ok());
        let pods = guard.as_deref();
        ev.for_each_process_mut(|p| self.enrich_shared(p, pods));
        drop(guard);
        out.pass(ev);
    }

    fn tick(&mut self, now: Instant, _out: &mut Out) {
        self.memo.clear();
        if let Some((u, g)) = &mut self.users {
            u.refresh(now);
            g.refresh(now);
        }
    }

    fn tick_interval(&self) -> Option<Duration> {
        (self.users.is_some() || self.pods.is_some()).then_some(Duration::from_secs(MEMO_SECS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Credentials, ProcessExec};
    use crate::EventKind;
    use serde_json::json;

    const ID: &str = "551e161c47d8ff0eb665438a7bcd5b4e3ef5a297282b40a92b7c77d6bd168eb3";

    fn exec_in_pod(binary: &str, args: &str) -> Event {
        let mut pod = Pod {
            container: Some(Container { id: Some(format!("containerd://{ID}")), ..Default::default() }),
            ..Default::default()
        };
        pod.extra.insert("uid".into(), json!("0b5a4c6e-8f0c-4c57-9a3e-1f2a3b4c5d6e"));
        let mut p = Process {
            uid: Some(1000),
            binary: Some(binary.into()),
            arguments: Some(args.into()),
            pod: Some(pod),
            ..Default::default()
        };
        p.process_credentials = Some(Credentials { uid: Some(1000), gid: Some(50), ..Default::default() });
        let mut e = Event::new(
            EventKind::ProcessExec(Box::new(ProcessExec { process: Some(p.into()), ..Default::default() })),
            "x",
            Timestamp::now(),
        );
        e.node_name = None;
        e
    }

    fn files() -> (tempfile::TempDir, EnrichConfig) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("passwd"), "alice:x:1000:1000::/home/alice:/bin/sh\n").unwrap();
        std::fs::write(dir.path().join("group"), "staff:x:50:\n").unwrap();
        let cfg = EnrichConfig {
            passwd_path: dir.path().join("passwd"),
            group_path: dir.path().join("group"),
            ..Default::default()
        };
        (dir, cfg)
    }

    #[test]
    fn lsm_events_get_user_names_and_the_node_name() {
        let (_dir, cfg) = files();
        let mut e = Enrich::with_pods(&cfg, &Context { node_name: "node-a".into() }, None);
        let ev = Event::from_json(
            r#"{"process_lsm":{"process":{"binary":"/bin/cat","uid":1000},"function_name":"file_open"},"time":"2024-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let mut out = Out::new("enrich");
        e.process(ev, Instant::now(), &mut out);
        let v: serde_json::Value = serde_json::from_str(&out.take()[0].to_json()).unwrap();
        assert_eq!(v["node_name"], "node-a");
        assert_eq!(v["process_lsm"]["process"]["user"]["name"], "alice", "{v}");
    }

    #[tokio::test]
    async fn names_node_and_pod_from_the_api_server() {
        let (dir, mut cfg) = files();
        let (port, server) = k8s::tests::fixture(k8s::tests::pod_list()).await;
        let tok = dir.path().join("token");
        std::fs::write(&tok, "t").unwrap();
        cfg.kubernetes.api_url = format!("http://127.0.0.1:{port}");
        cfg.kubernetes.token_path = tok;
        let ctx = Context { node_name: "node-1".into() };
        let (mut stage, task) = Enrich::new(&cfg, &ctx).unwrap();
        server.await.unwrap();
        // The refresher fills the cache right after its first listing.
        let cache = stage.pods.clone().unwrap();
        for _ in 0..200 {
            if !cache.read().unwrap().by_uid.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.unwrap().abort();
        let mut out = Out::new("enrich");
        stage.process(exec_in_pod("/bin/cat", "/tmp/healthy"), Instant::now(), &mut out);
        stage.process(exec_in_pod("/bin/sh", "-c id"), Instant::now(), &mut out);
        let evs = out.take();
        // process.group is nightjar's: written with its extension only.
        let ext = crate::event::Extensions { process_group: true, ..Default::default() };
        let v: Value = crate::event::with_extensions(ext, || serde_json::from_str(&evs[0].to_json()).unwrap());
        assert_eq!(v["node_name"], "node-1");
        let p = &v["process_exec"]["process"];
        assert_eq!(p["user"]["name"], "alice");
        assert_eq!(p["group"]["name"], "staff");
        assert_eq!(p["pod"]["name"], "xwing-7d4b9c-abcde");
        assert_eq!(p["pod"]["namespace"], "default");
        assert_eq!(p["pod"]["pod_labels"]["app"], "xwing");
        assert_eq!(p["pod"]["workload"], "xwing");
        assert_eq!(p["pod"]["container"]["name"], "spaceship");
        assert_eq!(p["pod"]["container"]["image"]["name"], "docker.io/tgraf/netperf:latest");
        assert_eq!(p["pod"]["container"]["maybe_exec_probe"], true);
        let v2: Value = serde_json::from_str(&evs[1].to_json()).unwrap();
        assert_eq!(v2["process_exec"]["process"]["pod"]["container"]["maybe_exec_probe"], false);
    }

    #[test]
    fn a_shared_process_is_enriched_once_and_shared_by_its_events() {
        let (_dir, cfg) = files();
        let mut stage = Enrich::with_pods(&cfg, &Context { node_name: "n".into() }, None);
        // As the sensor's cache holds an execution's process and gives each event a clone.
        let cached =
            SharedProcess::new(Process { uid: Some(1000), binary: Some("/bin/cat".into()), ..Default::default() });
        let ev = || {
            let exec = ProcessExec { process: Some(cached.clone()), ..Default::default() };
            Event::new(EventKind::ProcessExec(Box::new(exec)), "n", Timestamp::now())
        };
        let mut out = Out::new("enrich");
        stage.process(ev(), Instant::now(), &mut out);
        stage.process(ev(), Instant::now(), &mut out);
        let evs = out.take();
        let procs: Vec<&SharedProcess> = evs
            .iter()
            .map(|e| match &e.kind {
                EventKind::ProcessExec(x) => x.process.as_ref().unwrap(),
                k => panic!("kind {}", k.key()),
            })
            .collect();
        assert_eq!(procs[0].user.as_ref().and_then(|u| u.name.as_deref()), Some("alice"));
        assert!(SharedProcess::ptr_eq(procs[0], procs[1]), "the second event gets the first's enriched process");
        assert!(cached.user.is_none(), "the cache's process is not changed under it");
        stage.tick(Instant::now(), &mut out);
        stage.process(ev(), Instant::now(), &mut out);
        let again = out.take();
        let EventKind::ProcessExec(x) = &again[0].kind else { panic!() };
        assert!(!SharedProcess::ptr_eq(x.process.as_ref().unwrap(), procs[0]), "a tick forgets what was enriched");
        assert_eq!(x.process.as_ref().unwrap().user, procs[0].user);
    }

    #[test]
    fn outside_a_cluster_keeps_the_cgroup_identity() {
        let (_dir, cfg) = files();
        let mut stage = Enrich::with_pods(&cfg, &Context { node_name: "n".into() }, None);
        let mut out = Out::new("enrich");
        stage.process(exec_in_pod("/bin/sh", ""), Instant::now(), &mut out);
        let v: Value = serde_json::from_str(&out.take()[0].to_json()).unwrap();
        let pod = &v["process_exec"]["process"]["pod"];
        assert_eq!(pod["container"]["id"], format!("containerd://{ID}"));
        assert!(pod.get("name").is_none());
    }
}
