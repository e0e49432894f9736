//! Every line of the Tetragon samples deserializes and serializes back to an equal
//! JSON value. The samples are vendored in `tests/corpus/tetragon/` (so a clone anywhere
//! is self-contained); the shared corpus they came from, `../shared/corpus/tetragon/`
//! beside the checkout, is checked too when it is there, and so is `NIGHTJAR_CORPUS`.
use std::path::{Path, PathBuf};

use nightjar_pipeline::Event;
use serde_json::Value;

fn vendored() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/tetragon")
}

fn jsonl_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("jsonl"))
        .collect();
    v.sort();
    v
}

/// Round-trips every line of every `.jsonl` file in `dir`; returns (files, lines).
fn round_trip_dir(dir: &Path) -> (usize, usize) {
    let (mut files, mut lines) = (0, 0);
    for path in jsonl_files(dir) {
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let at = format!("{}:{}", path.display(), i + 1);
            let event = Event::from_json(line).unwrap_or_else(|e| panic!("{at}: {e}"));
            let want: Value = serde_json::from_str(line).unwrap();
            let got: Value = serde_json::from_str(&event.to_json()).unwrap();
            assert_eq!(got, want, "{at}: round trip changed the event");
            assert!(event.process().is_some(), "{at}: process not recognised");
            lines += 1;
        }
    }
    (files, lines)
}

#[test]
fn every_vendored_corpus_line_round_trips() {
    let dir = vendored();
    let (files, lines) = round_trip_dir(&dir);
    assert!(files >= 2 && lines >= 3, "corpus too small: {files} files, {lines} lines in {}", dir.display());
}

#[test]
fn the_shared_corpus_round_trips_and_is_vendored_whole() {
    let mut dirs: Vec<PathBuf> = std::env::var_os("NIGHTJAR_CORPUS").map(PathBuf::from).into_iter().collect();
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/tetragon");
    if shared.is_dir() {
        dirs.push(shared.clone());
    }
    for dir in &dirs {
        let (files, lines) = round_trip_dir(dir);
        assert!(files >= 1 && lines >= 1, "no samples in {}", dir.display());
    }
    // Samples added to the shared corpus must be copied into the repository too.
    if shared.is_dir() {
        for path in jsonl_files(&shared) {
            let copy = vendored().join(path.file_name().unwrap());
            assert_eq!(
                std::fs::read(&path).unwrap(),
                std::fs::read(&copy).unwrap_or_default(),
                "{} differs from its vendored copy {}: copy it into tests/corpus/tetragon/",
                path.display(),
                copy.display()
            );
        }
    }
}
