//! The DaemonSet's pod, run on this host the way a container runtime would run it (no
//! container engine here): the image's files as the Dockerfile's last stage lays them out,
//! in a root directory of their own; the containers' volumeMounts bind-mounted into it in a
//! private mount namespace (ConfigMaps as files, hostPaths from the host: kernel filesystems
//! as they are, the writable export directory as a temp dir); /proc, a read-only sysfs,
//! a minimal /dev; the root read-only when the container says so; the command and args
//! resolved against the image's ENTRYPOINT and CMD; the environment the pod spec gives
//! (spec.nodeName stood in for); exactly the capabilities of the securityContext.
//!
//! What differs from a real node, and why: the pod gets a network namespace of its own,
//! not the host's (hostNetwork), because the agent's ports (2112, 54321) belong to other
//! agents on this shared machine; the agent traces one cgroup only
//! (NIGHTJAR__SENSOR__CGROUP_FILTER), because the pod's policies include an enforcing one
//! (block-cryptominers) that must not reach other processes here; no API server (no
//! service-account token, enrichment from cgroups). The binary is the test build of the
//! same package and features as the Dockerfile's `cargo build --release --locked`.
//!
//! Checked: the agent becomes ready on its startup/readiness/liveness probes' path and port,
//! runs with exactly the capabilities asked for, writes the export file where export-stdout
//! reads it (mode 0600), export-stdout prints the events, `nightjar getevents -o compact -f -`
//! reads that stream, every metric the dashboard queries is in a live scrape, and SIGTERM
//! stops the pod's agent cleanly.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::Duration,
};

use serde_json::Value;

use crate::{
    common::{wait_for, Agent, TestCgroup},
    kubernetes::{agent_container, daemonset, kubectl_debian, kustomize, root},
};

/// A name for the node, as the downward API would give spec.nodeName.
const NODE: &str = "k8s-test-node";

/// The image as the Dockerfile's last stage makes it: its COPY instructions, ENTRYPOINT and
/// CMD. `COPY --from=build /src/target/release/X` is the test build of X.
struct Image {
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("Dockerfile: expected a JSON list, got {s:?}: {e}"))
}

/// Lays out `rootfs` from the Dockerfile, plus what the base image (debian:bookworm-slim)
/// provides that the pod uses: the dynamic loader and libraries, coreutils' `env` and `tail`,
/// util-linux's `setpriv`, `/var/run -> /run`.
fn build_image(rootfs: &Path) -> Image {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let last = dockerfile.rsplit_once("\nFROM ").expect("a multi-stage Dockerfile").1;
    assert!(last.starts_with("debian:bookworm"), "the image's base is {last:?}: this host stands in for bookworm");
    // The build stage's cargo command: the same package and features as the test build.
    let build = dockerfile.lines().find(|l| l.contains("cargo build")).expect("a cargo build in the Dockerfile");
    assert!(build.contains("cargo build --release --locked"), "{build}");
    assert!(
        !build.contains("--features") && !build.contains("--no-default-features") && !build.contains(" -p "),
        "{build}"
    );
    let (mut entrypoint, mut cmd) = (Vec::new(), Vec::new());
    let mut bins: Vec<PathBuf> = Vec::new();
    for line in last.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("COPY ") {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let (src, dst) = (parts[parts.len() - 2], parts[parts.len() - 1]);
            let dst = rootfs.join(dst.trim_start_matches('/'));
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            if let Some(bin) = src.strip_prefix("/src/target/release/") {
                assert!(parts[0] == "--from=build", "{line}");
                assert_eq!(bin, "nightjar", "{line}: only the nightjar binary is built here");
                std::fs::copy(env!("CARGO_BIN_EXE_nightjar"), &dst).unwrap();
                bins.push(dst);
            } else {
                copy_tree(&root().join(src), &dst);
            }
        } else if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            entrypoint = json_list(rest);
        } else if let Some(rest) = line.strip_prefix("CMD ") {
            cmd = json_list(rest);
        }
    }
    for tool in ["/usr/bin/env", "/usr/bin/tail", "/usr/bin/setpriv"] {
        let dst = rootfs.join(&tool[1..]);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(tool, &dst).unwrap();
        bins.push(PathBuf::from(tool));
    }
    for bin in &bins {
        for lib in shared_libraries(bin) {
            let dst = rootfs.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &dst).unwrap();
        }
    }
    for d in ["proc", "sys", "dev", "run", "tmp", "etc", "root", "var"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    // Relative, so that it can never point at the host's /run from outside the root.
    std::os::unix::fs::symlink("../run", rootfs.join("var/run")).unwrap();
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    Image { entrypoint, cmd }
}

fn copy_tree(src: &Path, dst: &Path) {
    if src.is_dir() {
        std::fs::create_dir_all(dst).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &dst.join(e.file_name()));
        }
    } else {
        std::fs::copy(src, dst).unwrap();
    }
}

/// The shared objects `bin` loads (and the loader), as `ldd` lists them.
fn shared_libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')).map(PathBuf::from))
        .collect()
}

/// A path inside the root, its symlinks resolved inside the root (as runtimes do): never
/// above it, whatever a link says.
fn in_root(rootfs: &Path, path: &str) -> PathBuf {
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    let mut todo: Vec<std::ffi::OsString> = Path::new(path)
        .components()
        .rev()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_owned()),
            std::path::Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            parts.pop();
            continue;
        }
        let here: PathBuf = rootfs.join(parts.iter().collect::<PathBuf>()).join(&c);
        match std::fs::read_link(&here) {
            Ok(target) => {
                links += 1;
                assert!(links < 40, "{path}: too many links");
                if target.is_absolute() {
                    parts.clear();
                }
                for t in target.components().rev() {
                    match t {
                        std::path::Component::Normal(n) => todo.push(n.to_owned()),
                        std::path::Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            Err(_) => parts.push(c),
        }
    }
    rootfs.join(parts.iter().collect::<PathBuf>())
}

/// Where each volume of the pod comes from on this host, and whether the kubelet mounts it
/// read-only whatever the mount says (ConfigMaps).
fn volume_sources(pod: &Value, objs: &[Value], dir: &Path) -> BTreeMap<String, (PathBuf, bool)> {
    let mut out = BTreeMap::new();
    for v in pod["volumes"].as_array().expect("volumes") {
        let name = v["name"].as_str().unwrap().to_owned();
        let src = if let Some(cm) = v.get("configMap") {
            let want = cm["name"].as_str().unwrap();
            let obj = objs
                .iter()
                .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == want)
                .unwrap_or_else(|| panic!("volume {name}: ConfigMap {want} is not in the manifests"));
            let d = dir.join("volumes").join(&name);
            std::fs::create_dir_all(&d).unwrap();
            for (k, text) in obj["data"].as_object().unwrap() {
                std::fs::write(d.join(k), text.as_str().unwrap()).unwrap();
            }
            (d, true)
        } else if let Some(hp) = v.get("hostPath") {
            let path = hp["path"].as_str().unwrap();
            let kind = hp["type"].as_str().unwrap_or("");
            if path.starts_with("/sys/") || path.starts_with("/proc") || kind == "File" {
                // The node's own: kernel filesystems and the files the agent reads.
                let p = PathBuf::from(path);
                match kind {
                    "Directory" => assert!(p.is_dir(), "hostPath {path} (Directory) is not a directory here"),
                    "File" => assert!(p.is_file(), "hostPath {path} (File) is not a file here"),
                    other => panic!("hostPath {path}: type {other:?} for a node path"),
                }
                (p, false)
            } else {
                assert_eq!(kind, "DirectoryOrCreate", "hostPath {path}: the kubelet must be able to create it");
                let d = dir.join("node").join(path.trim_start_matches('/'));
                std::fs::create_dir_all(&d).unwrap();
                (d, false)
            }
        } else {
            panic!("volume {name}: a kind this test does not stand in for: {v}");
        };
        out.insert(name, src);
    }
    out
}

/// Capability names of a securityContext as setpriv's bounding set.
fn bounding_set(sc: &Value) -> (String, u64) {
    let drop: Vec<&str> =
        sc["capabilities"]["drop"].as_array().into_iter().flatten().filter_map(|c| c.as_str()).collect();
    assert_eq!(drop, ["ALL"], "containers drop every capability and add what they need");
    let mut set = "-all".to_owned();
    let mut mask = 0u64;
    for c in sc["capabilities"]["add"].as_array().into_iter().flatten() {
        let c = c.as_str().unwrap().to_ascii_lowercase();
        set.push_str(&format!(",+{c}"));
        mask |= 1 << cap_number(&c);
    }
    (set, mask)
}

fn cap_number(name: &str) -> u32 {
    match name {
        "dac_read_search" => 2,
        "kill" => 5,
        "net_admin" => 12,
        "ipc_lock" => 14,
        "sys_ptrace" => 19,
        "sys_admin" => 21,
        "sys_resource" => 24,
        "perfmon" => 38,
        "bpf" => 39,
        other => panic!("capability {other}: add its number here"),
    }
}

/// Runs `container` of the pod in `rootfs`, as described at the top of this file. `net`:
/// the pid of a process whose network namespace the container joins (None: a new one).
fn run_container(
    rootfs: &Path,
    image: &Image,
    container: &Value,
    volumes: &BTreeMap<String, (PathBuf, bool)>,
    extra_env: &[(&str, String)],
    net: Option<u32>,
) -> Child {
    let sc = &container["securityContext"];
    let mut script = String::from("set -e\n");
    let r = rootfs.display();
    if net.is_none() {
        script.push_str("ip link set lo up\n");
    }
    script
        .push_str(&format!("mount --bind {r} {r}\nmount -t proc proc {r}/proc\nmount -t sysfs -o ro sysfs {r}/sys\n"));
    script.push_str(&format!("mount -t tmpfs -o mode=755 tmpfs {r}/dev\nmount -t tmpfs tmpfs {r}/run\n"));
    for d in ["null", "zero", "full", "random", "urandom"] {
        script.push_str(&format!("touch {r}/dev/{d}\nmount --bind /dev/{d} {r}/dev/{d}\n"));
    }
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap();
        let (src, always_ro) = volumes.get(name).unwrap_or_else(|| panic!("mount {name}: no such volume"));
        let target = m["mountPath"].as_str().unwrap();
        let ro = m["readOnly"].as_bool().unwrap_or(false) || *always_ro;
        // Mount points under /sys exist in sysfs; others are made in the root first.
        let dst =
            if target.starts_with("/sys/") { PathBuf::from(format!("{r}{target}")) } else { in_root(rootfs, target) };
        if !target.starts_with("/sys/") {
            if src.is_file() {
                script.push_str(&format!("mkdir -p {}\ntouch {}\n", dst.parent().unwrap().display(), dst.display()));
            } else {
                script.push_str(&format!("mkdir -p {}\n", dst.display()));
            }
        }
        script.push_str(&format!("mount --bind {} {}\n", src.display(), dst.display()));
        if ro {
            script.push_str(&format!("mount -o remount,bind,ro {}\n", dst.display()));
        }
    }
    if sc["readOnlyRootFilesystem"].as_bool() == Some(true) {
        script.push_str(&format!("mount -o remount,bind,ro {r}\n"));
    }
    // Kubernetes: command replaces the ENTRYPOINT, args the CMD.
    let list = |k: &str| -> Option<Vec<String>> {
        container.get(k).and_then(|v| v.as_array()).map(|a| a.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
    };
    let mut argv = list("command").unwrap_or_else(|| image.entrypoint.clone());
    argv.extend(list("args").unwrap_or_else(|| {
        if container.get("command").is_some() {
            vec![]
        } else {
            image.cmd.clone()
        }
    }));
    let mut env = vec![("PATH".to_owned(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned())];
    env.push(("HOSTNAME".to_owned(), NODE.to_owned()));
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap().to_owned();
        if let Some(v) = e["value"].as_str() {
            env.push((name, v.to_owned()));
        } else if e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName" {
            env.push((name, NODE.to_owned()));
        } else {
            panic!("env {name}: a source this test does not stand in for: {e}");
        }
    }
    env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let (caps, _) = bounding_set(sc);
    let nnp = if sc["allowPrivilegeEscalation"].as_bool() == Some(false) { "--no-new-privs " } else { "" };
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let env_args: Vec<String> = env.iter().map(|(k, v)| quote(&format!("{k}={v}"))).collect();
    let argv: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    script.push_str(&format!(
        "exec chroot {r} /usr/bin/env -i {} /usr/bin/setpriv {nnp}--bounding-set={caps} --inh-caps=-all -- /usr/bin/env {}\n",
        env_args.join(" "),
        argv.join(" ")
    ));
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private"]);
    match net {
        None => {
            cmd.arg("--net");
        }
        Some(pid) => {
            cmd.args(["nsenter", &format!("--net=/proc/{pid}/ns/net"), "--"]);
        }
    }
    cmd.args(["/bin/sh", "-c", &script]);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("unshare")
}

/// GET inside the pod's network namespace, as the kubelet's probes (and Prometheus) do.
fn http_in_pod(pid: u32, port: u16, path: &str) -> Option<(u16, String)> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["curl", "-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_owned()))
}

/// The port a probe names (a number, or a container port's name).
fn probe_target(container: &Value, probe: &str) -> (String, u16) {
    let get = &container[probe]["httpGet"];
    let path = get["path"].as_str().unwrap_or_else(|| panic!("{probe}: an httpGet probe")).to_owned();
    let port = match &get["port"] {
        Value::Number(n) => n.as_u64().unwrap() as u16,
        Value::String(name) => container["ports"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| &p["name"] == name))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("{probe}: no container port named {name}")) as u16,
        other => panic!("{probe}: port {other}"),
    };
    (path, port)
}

/// What a child prints on stderr, kept as it comes (a full pipe would block it).
fn drain_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let err = child.stderr.take().unwrap();
    let b = buf.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let mut s = b.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    });
    buf
}

/// Lines a child prints on stdout, as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// `nightjar_*` names a PromQL expression uses (histogram/summary suffixes kept: a scrape
/// shows them as they are written).
fn metric_names(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\b(?:nightjar|tetragon)_[a-z0-9_]+").unwrap();
    re.find_iter(expr).map(|m| m.as_str().to_owned()).collect()
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| match (k.as_str(), x) {
            ("expr", Value::String(s)) => out.push(s.clone()),
            _ => exprs(x, out),
        }),
        Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

#[test]
fn the_daemonset_pod_runs_on_this_host_as_kubernetes_would_run_it() {
    let (objs, _) = kustomize(&kubectl_debian(), "deploy/kubernetes/base");
    let pod = &daemonset(&objs)["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true, "the sensor must see the node's processes");
    let agent_spec = agent_container(&objs).clone();
    let sidecar_spec = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "export-stdout")
        .expect("export-stdout")
        .clone();

    let dir = tempfile::Builder::new().prefix("k8s-pod-").tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    let image = build_image(&rootfs);
    let volumes = volume_sources(pod, &objs, dir.path());
    let cg = TestCgroup::new("k8s-pod-test");

    let mut agent = Agent(Some(run_container(
        &rootfs,
        &image,
        &agent_spec,
        &volumes,
        &[("NIGHTJAR__SENSOR__CGROUP_FILTER", cg.id().to_string())],
        None,
    )));
    let agent_log = drain_stderr(agent.0.as_mut().unwrap());
    let pid = agent.0.as_ref().unwrap().id();

    // The probes, as the kubelet runs them: startup first, then readiness and liveness.
    let (path, port) = probe_target(&agent_spec, "startupProbe");
    let ready = wait_for(Duration::from_secs(120), || http_in_pod(pid, port, &path).filter(|(s, _)| *s == 200));
    if ready.is_none() {
        drop(agent);
        panic!("the agent never passed its startup probe {path} on {port}:\n{}", agent_log.lock().unwrap());
    }
    for probe in ["readinessProbe", "livenessProbe"] {
        let (path, port) = probe_target(&agent_spec, probe);
        assert_eq!(http_in_pod(pid, port, &path).map(|r| r.0), Some(200), "{probe}");
    }
    // Exactly the capabilities the securityContext asks for (of those this machine's root
    // has at all: a sandbox may lack some, as this one lacks CAP_SYS_RESOURCE).
    let caps = |pid: &str, key: &str| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status.lines().find_map(|l| l.strip_prefix(key)).map(|h| u64::from_str_radix(h.trim(), 16).unwrap()).unwrap()
    };
    let want = bounding_set(&agent_spec["securityContext"]).1 & caps("self", "CapBnd:");
    assert_eq!(caps(&pid.to_string(), "CapEff:"), want, "the agent's effective capabilities");

    // export-stdout, in its own mount namespace, the pod's network.
    let mut sidecar = Agent(Some(run_container(&rootfs, &image, &sidecar_spec, &volumes, &[], Some(pid))));
    let sidecar_log = drain_stderr(sidecar.0.as_mut().unwrap());
    let printed = lines_of(sidecar.0.as_mut().unwrap());

    // Events of processes in the test's cgroup: an exec, and two reads of /etc/shadow by one
    // process (monitor-sensitive-files; the second is a duplicate the dedup stage folds, so
    // that nightjar_stage_dropped_total, which the dashboard shows, has a series).
    let marker = format!("k8s-pod-{}", std::process::id());
    cg.run("/bin/echo", &[&marker]);
    cg.run("/bin/cat", &["/etc/shadow", "/etc/shadow"]);

    let export_arg = sidecar_spec["args"].as_array().unwrap().last().unwrap().as_str().unwrap().to_owned();
    let mut seen = Vec::new();
    let got = wait_for(Duration::from_secs(30), || {
        seen.extend(printed.try_iter());
        let exec = seen.iter().any(|l| l.contains("process_exec") && l.contains(&marker));
        let kprobe = seen.iter().any(|l| l.contains("process_kprobe") && l.contains("/etc/shadow"));
        (exec && kprobe).then_some(())
    });
    assert!(
        got.is_some(),
        "export-stdout ({export_arg}) never printed both events; it printed {} lines\nits stderr: {}\nthe agent's: {}",
        seen.len(),
        sidecar_log.lock().unwrap(),
        agent_log.lock().unwrap()
    );

    // The file export-stdout reads is the one the agent writes, on the node's export dir.
    let mount = sidecar_spec["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| export_arg.starts_with(m["mountPath"].as_str().unwrap()))
        .expect("export-stdout mounts its file");
    let on_node = volumes[mount["name"].as_str().unwrap()]
        .0
        .join(Path::new(&export_arg).strip_prefix(mount["mountPath"].as_str().unwrap()).unwrap());
    let meta = std::fs::metadata(&on_node).unwrap_or_else(|e| panic!("{}: {e}", on_node.display()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", on_node.display());
    assert!(std::fs::read_to_string(&on_node).unwrap().contains(&marker));

    // kubectl logs ds/nightjar -c export-stdout -f | nightjar getevents -o compact -f -
    let out = {
        let mut ge = crate::common::nightjar();
        ge.args(["getevents", "-o", "compact", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ge.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), (seen.join("\n") + "\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let compact = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && compact.contains(&marker), "{compact}");
    assert!(compact.contains("/etc/shadow"), "{compact}");
    assert!(
        out.stderr.is_empty(),
        "getevents skipped lines of export-stdout: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every metric the dashboard (as deployed) queries is in a live scrape of this agent.
    let dash = objs
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("dashboard");
    let mut qs = Vec::new();
    for (_, text) in dash["data"].as_object().unwrap() {
        exprs(&serde_json::from_str(text.as_str().unwrap()).unwrap(), &mut qs);
    }
    assert!(!qs.is_empty());
    let wanted: Vec<String> = qs.iter().flat_map(|q| metric_names(q)).collect();
    let mut last = String::new();
    let all_there = wait_for(Duration::from_secs(20), || {
        last = http_in_pod(pid, port, "/metrics")?.1;
        let exported: std::collections::BTreeSet<&str> = last
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        wanted.iter().all(|n| exported.contains(n.as_str())).then_some(())
    });
    assert!(all_there.is_some(), "the dashboard queries {wanted:?}; a live scrape of this agent has only:\n{last}");

    drop(sidecar);
    let out = agent.terminate();
    assert!(
        out.status.success(),
        "the agent did not stop cleanly on SIGTERM: {}\n{}",
        out.status,
        agent_log.lock().unwrap()
    );
}
