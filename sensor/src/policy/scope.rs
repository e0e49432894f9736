//! A policy's Kubernetes scope, as Tetragon defines it: a `TracingPolicyNamespaced` applies
//! to the pods of its namespace, `podSelector` to the pods whose labels match,
//! `containerSelector` to the containers whose fields (`name`) match, `hostSelector: {}`
//! adds the processes that run in no container. What is matched: the pods this node runs,
//! as the Kubernetes API lists them ([`PodMeta`]), joined to container cgroups by id.
use std::collections::BTreeMap;

use super::{
    spec::{LabelExpr, LabelOp, LabelSelector},
    Loaded,
};

/// One pod of this node, as much of it as a scope looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// (bare 64-hex container id, container name).
    pub containers: Vec<(String, String)>,
}

/// Where a policy applies; None from [`Scope::of`] means everywhere.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// TracingPolicyNamespaced: only pods of this namespace.
    pub namespace: Option<String>,
    pub pods: Option<LabelSelector>,
    pub containers: Option<LabelSelector>,
    /// hostSelector: {}: also processes in no container.
    pub host: bool,
}

impl Scope {
    /// The scope of a validated policy; None when it applies to every process.
    pub fn of(l: &Loaded) -> Option<Scope> {
        let p = &l.policy;
        let namespace = (p.kind == "TracingPolicyNamespaced").then(|| p.metadata.namespace.clone().unwrap_or_default());
        if namespace.is_none() && p.spec.pod_selector.is_none() && p.spec.container_selector.is_none() {
            return None;
        }
        Some(Scope {
            namespace,
            pods: p.spec.pod_selector.clone(),
            containers: p.spec.container_selector.clone(),
            host: p.spec.host_selector.is_some(),
        })
    }

    /// Does the scope admit a container of `pod` named `container`? `pod` is None for a
    /// container whose pod the API has not listed (yet): only a bare `podSelector: {}`
    /// admits it (any pod), since its labels, namespace and name are unknown.
    pub fn admits(&self, pod: Option<&PodMeta>, container: Option<&str>) -> bool {
        let Some(pod) = pod else {
            return self.namespace.is_none() && self.containers.is_none() && self.pods.as_ref().is_some_and(is_empty);
        };
        if self.namespace.as_ref().is_some_and(|ns| *ns != pod.namespace) {
            return false;
        }
        if self.pods.as_ref().is_some_and(|s| !matches(s, &pod.labels)) {
            return false;
        }
        match (&self.containers, container) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(s), Some(name)) => matches(s, &BTreeMap::from([("name".to_owned(), name.to_owned())])),
        }
    }

    /// For `status`: e.g. `namespace default, pods app=web, containers name In [main], host`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ns) = &self.namespace {
            parts.push(format!("namespace {ns}"));
        }
        if let Some(s) = &self.pods {
            parts.push(format!("pods {}", selector_text(s)));
        }
        if let Some(s) = &self.containers {
            parts.push(format!("containers {}", selector_text(s)));
        }
        if self.host {
            parts.push("host".into());
        }
        parts.join(", ")
    }
}

fn is_empty(s: &LabelSelector) -> bool {
    s.match_labels.is_empty() && s.match_expressions.is_empty()
}

/// Kubernetes label-selector semantics: every matchLabels pair and every expression holds.
pub fn matches(s: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) && s.match_expressions.iter().all(|e| expr(e, labels))
}

fn expr(e: &LabelExpr, labels: &BTreeMap<String, String>) -> bool {
    let v = labels.get(&e.key);
    match e.operator {
        LabelOp::In => v.is_some_and(|v| e.values.contains(v)),
        LabelOp::NotIn => v.is_none_or(|v| !e.values.contains(v)),
        LabelOp::Exists => v.is_some(),
        LabelOp::DoesNotExist => v.is_none(),
    }
}

fn selector_text(s: &LabelSelector) -> String {
    if is_empty(s) {
        return "(all)".into();
    }
    let mut parts: Vec<String> = s.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for e in &s.match_expressions {
        parts.push(match e.operator {
            LabelOp::Exists => e.key.clone(),
            LabelOp::DoesNotExist => format!("!{}", e.key),
            op => format!("{} {op:?} [{}]", e.key, e.values.join(", ")),
        });
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(yaml: &str) -> LabelSelector {
        serde_norway::from_str(yaml).unwrap()
    }

    fn pod(ns: &str, labels: &[(&str, &str)]) -> PodMeta {
        PodMeta {
            namespace: ns.into(),
            labels: labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn label_selectors_follow_kubernetes() {
        let web = pod("default", &[("app", "web"), ("tier", "front")]);
        let db = pod("default", &[("app", "db")]);
        let s = sel("matchLabels: {app: web}");
        assert!(matches(&s, &web.labels) && !matches(&s, &db.labels));
        let s = sel("matchExpressions: [{key: app, operator: NotIn, values: [web]}]");
        assert!(!matches(&s, &web.labels) && matches(&s, &db.labels) && matches(&s, &BTreeMap::new()));
        let s = sel("matchExpressions: [{key: tier, operator: Exists}]");
        assert!(matches(&s, &web.labels) && !matches(&s, &db.labels));
        let s =
            sel("matchExpressions: [{key: tier, operator: DoesNotExist}, {key: app, operator: In, values: [db, x]}]");
        assert!(!matches(&s, &web.labels) && matches(&s, &db.labels));
        assert!(matches(&sel("{}"), &db.labels));
    }

    #[test]
    fn scopes_combine_namespace_pods_and_containers() {
        let web = pod("shop", &[("app", "web")]);
        let s = Scope {
            namespace: Some("shop".into()),
            pods: Some(sel("matchLabels: {app: web}")),
            containers: Some(sel("matchExpressions: [{key: name, operator: In, values: [main]}]")),
            host: false,
        };
        assert!(s.admits(Some(&web), Some("main")));
        assert!(!s.admits(Some(&web), Some("sidecar")));
        assert!(!s.admits(Some(&web), None), "a container selector needs the container's name");
        assert!(!s.admits(Some(&pod("other", &[("app", "web")])), Some("main")));
        assert!(!s.admits(None, None));
        let any = Scope { namespace: None, pods: Some(sel("{}")), containers: None, host: false };
        assert!(any.admits(None, None), "podSelector {{}} admits a pod not listed yet");
        assert_eq!(s.describe(), "namespace shop, pods app=web, containers name In [main]");
    }
}
