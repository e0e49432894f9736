//! Hands this node's pods, as the pipeline's enrichment lists them from the API server,
//! to the sensor: the policies' Kubernetes scopes (podSelector, containerSelector,
//! TracingPolicyNamespaced) are matched against them in the kernel.
use pipeline::stages::k8s::{PodFeed, PodIndex};
use sensor::{loader::Command, policy::scope::PodMeta};
use tokio::sync::mpsc;

/// Sends the pods at each refresh of the listing, until the sensor or the feed goes away.
pub fn spawn(mut feed: PodFeed, control: mpsc::Sender<Command>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while feed.refreshed.changed().await.is_ok() {
            let pods = match feed.cache.read() {
                Ok(ix) => metas(&ix),
                Err(_) => continue,
            };
            if control.send(Command::SetPods(pods)).await.is_err() {
                break;
            }
        }
    })
}

fn metas(ix: &PodIndex) -> Vec<PodMeta> {
    let mut out: Vec<PodMeta> = ix
        .by_uid
        .values()
        .map(|p| {
            let mut containers: Vec<(String, String)> =
                p.containers.iter().map(|(id, c)| (id.clone(), c.name.clone())).collect();
            containers.sort();
            PodMeta {
                uid: p.uid.clone(),
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                labels: p.labels.clone(),
                containers,
            }
        })
        .collect();
    out.sort_by(|a, b| a.uid.cmp(&b.uid));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::stages::k8s::{ContainerInfo, PodInfo};

    #[test]
    fn pods_keep_their_namespace_labels_and_containers() {
        let pod = PodInfo {
            uid: "u1".into(),
            name: "web-1".into(),
            namespace: "shop".into(),
            labels: [("app".to_owned(), "web".to_owned())].into(),
            containers: [("c1".to_owned(), ContainerInfo { name: "main".into(), ..Default::default() })].into(),
            ..Default::default()
        };
        let m = metas(&PodIndex::build(vec![pod], 10));
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].uid.as_str(), m[0].namespace.as_str()), ("u1", "shop"));
        assert_eq!(m[0].labels["app"], "web");
        assert_eq!(m[0].containers, vec![("c1".to_owned(), "main".to_owned())]);
    }
}
