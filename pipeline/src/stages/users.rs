//! User and group names from `/etc/passwd` and `/etc/group`, cached and re-read when the
//! file changes (checked at most once per refresh interval). Bounded: at most `max_entries`
//! names per file are kept; the rest are ignored with a warning.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

/// `name:x:id:...` files (passwd and group share the first three columns).
pub struct NameFile {
    path: PathBuf,
    max_entries: usize,
    refresh: Duration,
    names: HashMap<u32, String>,
    mtime: Option<SystemTime>,
    checked: Option<Instant>,
}

/// Parses `name:password:id:...` lines; malformed lines are skipped.
pub fn parse(text: &str, max_entries: usize) -> (HashMap<u32, String>, usize) {
    let mut names = HashMap::new();
    let mut skipped = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.split(':');
        let (Some(name), Some(_), Some(id)) = (cols.next(), cols.next(), cols.next()) else { continue };
        let Ok(id) = id.parse::<u32>() else { continue };
        if name.is_empty() {
            continue;
        }
        if names.len() >= max_entries {
            skipped += 1;
            continue;
        }
        // The first entry for an id wins, as getpwuid(3) does.
        names.entry(id).or_insert_with(|| name.to_owned());
    }
    (names, skipped)
}

impl NameFile {
    pub fn new(path: impl Into<PathBuf>, max_entries: usize, refresh: Duration) -> Self {
        NameFile { path: path.into(), max_entries, refresh, names: HashMap::new(), mtime: None, checked: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file if the refresh interval passed and its mtime changed.
    pub fn refresh(&mut self, now: Instant) {
        if self.checked.is_some_and(|t| now.duration_since(t) < self.refresh) {
            return;
        }
        self.checked = Some(now);
        let mtime = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if mtime.is_some() && mtime == self.mtime {
            return;
        }
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let (names, skipped) = parse(&text, self.max_entries);
                if skipped > 0 {
                    tracing::warn!(path = %self.path.display(), skipped, max = self.max_entries, "name file has more entries than kept");
                }
                self.names = names;
                self.mtime = mtime;
            }
            Err(e) => {
                if self.mtime.is_some() || self.checked.is_none() {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot read name file; names not added");
                }
                self.names.clear();
                self.mtime = None;
            }
        }
    }

    pub fn name(&self, id: u32) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_bounds() {
        let (m, skipped) =
            parse("root:x:0:0:root:/root:/bin/bash\n# c\nbad\nalice:x:1000:1000::/h:/bin/sh\nzed:x:7\n", 2);
        assert_eq!(m.get(&0).map(String::as_str), Some("root"));
        assert_eq!(m.get(&1000).map(String::as_str), Some("alice"));
        assert_eq!((m.len(), skipped), (2, 1));
    }

    #[test]
    fn rereads_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("passwd");
        std::fs::write(&p, "a:x:1:1::/:/bin/sh\n").unwrap();
        let mut f = NameFile::new(&p, 100, Duration::ZERO);
        let t = Instant::now();
        f.refresh(t);
        assert_eq!(f.name(1), Some("a"));
        std::fs::write(&p, "b:x:1:1::/:/bin/sh\n").unwrap();
        // Make the mtime differ even on coarse clocks.
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(later).unwrap();
        f.refresh(t + Duration::from_secs(1));
        assert_eq!(f.name(1), Some("b"));
        std::fs::remove_file(&p).unwrap();
        f.refresh(t + Duration::from_secs(2));
        assert_eq!(f.name(1), None);
    }
}
