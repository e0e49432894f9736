//! One event → one Kafka record: topic, key, headers and the Tetragon JSON payload.
use bytes::Bytes;
use pipeline::Event;

use super::config::KeyField;

#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub key: Option<String>,
    pub payload: Bytes,
    pub headers: Vec<(&'static str, String)>,
}

pub struct Encoder {
    pub topic: String,
    pub key: KeyField,
    pub headers: bool,
}

fn policy(ev: &Event) -> Option<&str> {
    ev.hook().and_then(|h| h.policy_name)
}

impl Encoder {
    pub fn encode(&self, ev: &Event) -> Record {
        let kind = ev.kind.key();
        let topic = self.topic.replace("{type}", kind);
        let node = ev.node_name.as_deref().unwrap_or("");
        let key = match self.key {
            KeyField::None => None,
            KeyField::NodeName => Some(node.to_owned()),
            KeyField::NamespacePod => Some(
                ev.process()
                    .and_then(|p| p.pod.as_ref())
                    .and_then(|p| Some(format!("{}/{}", p.namespace.as_deref()?, p.name.as_deref()?)))
                    .unwrap_or_else(|| node.to_owned()),
            ),
            KeyField::ExecId => Some(ev.process().and_then(|p| p.exec_id.clone()).unwrap_or_else(|| node.to_owned())),
        };
        let mut headers = Vec::new();
        if self.headers {
            headers.push(("event_type", kind.to_owned()));
            headers.push(("node_name", node.to_owned()));
            if let Some(p) = policy(ev) {
                headers.push(("policy_name", p.to_owned()));
            }
        }
        Record { topic, key, payload: Bytes::from(ev.to_json()), headers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::seq_event;

    #[test]
    fn topic_key_and_headers() {
        let e = Encoder { topic: "nj-{type}".into(), key: KeyField::NamespacePod, headers: true };
        let r = e.encode(&seq_event(3));
        assert_eq!(r.topic, "nj-process_kprobe");
        assert_eq!(r.key.as_deref(), Some("ns0/pod-3"));
        assert_eq!(r.headers[2], ("policy_name", "block-nc".to_owned()));
        // Event 0 has no pod: the key falls back to the node name.
        assert_eq!(e.encode(&seq_event(0)).key.as_deref(), Some("node-a"));
    }
}
