//! A [`Process`] shared by every event of one execution, with its JSON encoded once.
//!
//! The sensor's process cache holds one [`SharedProcess`] per execution and every event of
//! that execution (exec, each policy event, exit) carries a clone of it: an `Arc` clone, not
//! a copy of the strings, maps and capability sets. The first time it is serialised its
//! JSON is kept beside it, and every later event and every JSON sink writes those bytes
//! instead of encoding the process again. A stage that changes a process (enrichment,
//! redaction) calls [`SharedProcess::make_mut`], which copies it if it is shared and drops
//! the kept JSON, so what is written is always the process as it is now.
use std::{
    ops::Deref,
    sync::{Arc, OnceLock},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::event::{extension_bits, Process};

/// A shared, immutable-unless-copied [`Process`] that serialises from its cached JSON.
#[derive(Clone)]
pub struct SharedProcess(Arc<Inner>);

struct Inner {
    process: Process,
    /// The JSON and the export extensions it was written under (they change what a process
    /// writes, see [`crate::event::Extensions`]).
    json: OnceLock<(u8, Box<RawValue>)>,
}

impl Clone for Inner {
    fn clone(&self) -> Self {
        // Only a copy that is about to change is made: its JSON would be stale.
        Inner { process: self.process.clone(), json: OnceLock::new() }
    }
}

impl SharedProcess {
    pub fn new(process: Process) -> Self {
        SharedProcess(Arc::new(Inner { process, json: OnceLock::new() }))
    }

    /// The process to change: copied first if another event holds it too; the kept JSON is
    /// dropped either way.
    pub fn make_mut(&mut self) -> &mut Process {
        let inner = Arc::make_mut(&mut self.0);
        inner.json.take();
        &mut inner.process
    }

    /// Whether another handle (another event, the sensor's cache) holds this process too.
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }

    /// Whether two handles are the same shared process (not only equal ones).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// The address of the shared process: an identity key while a handle is held.
    pub fn as_ptr(&self) -> *const () {
        Arc::as_ptr(&self.0).cast()
    }

    /// The process's JSON, encoded at most once per set of extensions in force.
    fn json(&self) -> Result<Option<&RawValue>, serde_json::Error> {
        let bits = extension_bits();
        if let Some((b, raw)) = self.0.json.get() {
            return Ok((*b == bits).then_some(&**raw));
        }
        let raw = serde_json::value::to_raw_value(&self.0.process)?;
        // Another thread may have set it meanwhile, under the same or other extensions.
        let (b, raw) = self.0.json.get_or_init(|| (bits, raw));
        Ok((*b == bits).then_some(&**raw))
    }
}

impl Deref for SharedProcess {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.0.process
    }
}

impl From<Process> for SharedProcess {
    fn from(p: Process) -> Self {
        SharedProcess::new(p)
    }
}

impl Default for SharedProcess {
    fn default() -> Self {
        SharedProcess::new(Process::default())
    }
}

impl PartialEq for SharedProcess {
    fn eq(&self, other: &Self) -> bool {
        SharedProcess::ptr_eq(self, other) || self.0.process == other.0.process
    }
}

impl std::fmt::Debug for SharedProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.process.fmt(f)
    }
}

impl Serialize for SharedProcess {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.json().map_err(serde::ser::Error::custom)? {
            Some(raw) => raw.serialize(s),
            None => self.0.process.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for SharedProcess {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Process::deserialize(d).map(SharedProcess::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{with_extensions, CapSet, Capabilities, Cgroup, Extensions, Named};

    fn process() -> Process {
        Process {
            exec_id: Some("aWQ=".into()),
            pid: Some(7),
            binary: Some("/bin/\"sh\"\n".into()),
            arguments: Some("-c 'echo é'".into()),
            cap: Some(Capabilities {
                permitted: Some(CapSet::Mask(u64::MAX >> 23)),
                effective: Some(CapSet::Mask(1 << 21)),
                ..Default::default()
            }),
            cgroup: Some(Cgroup { id: Some("42".into()), path: Some("/a".into()), ..Default::default() }),
            user: Some(Named { name: Some("root".into()), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn writes_the_same_bytes_as_the_process_every_time_and_under_each_extension() {
        let p = process();
        let shared = SharedProcess::new(p.clone());
        let other = shared.clone();
        let direct = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::to_string(&shared).unwrap(), direct);
        assert!(shared.0.json.get().is_some(), "the JSON is kept after the first write");
        assert_eq!(serde_json::to_string(&other).unwrap(), direct, "a clone writes the kept JSON");
        let ext = Extensions { process_cgroup: true, ..Default::default() };
        let with_cgroup = with_extensions(ext, || serde_json::to_string(&p).unwrap());
        assert_ne!(with_cgroup, direct);
        assert_eq!(with_extensions(ext, || serde_json::to_string(&other).unwrap()), with_cgroup);
        assert_eq!(serde_json::to_value(&shared).unwrap(), serde_json::to_value(&p).unwrap());
        let back: SharedProcess = serde_json::from_str(&direct).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), direct, "read back, it writes the same line");
    }

    #[test]
    fn make_mut_copies_a_shared_process_and_drops_its_json() {
        let mut a = SharedProcess::new(process());
        let b = a.clone();
        let before = serde_json::to_string(&a).unwrap();
        a.make_mut().arguments = Some("changed".into());
        assert!(!SharedProcess::ptr_eq(&a, &b));
        assert_eq!(serde_json::to_string(&b).unwrap(), before, "the other holder is untouched");
        let after = serde_json::to_string(&a).unwrap();
        assert!(after.contains(r#""arguments":"changed""#), "{after}");
        let mut alone = a.clone();
        drop(a);
        alone.make_mut().pid = Some(8);
        assert!(serde_json::to_string(&alone).unwrap().contains(r#""pid":8"#), "a sole holder's JSON is dropped too");
    }
}
