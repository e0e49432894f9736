//! Every line of the Tetragon samples in `../shared/corpus/tetragon/` deserializes and
//! serializes back to an equal JSON value.
use std::path::PathBuf;

use nightjar_pipeline::Event;
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NIGHTJAR_CORPUS") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/tetragon")
}

#[test]
fn every_corpus_line_round_trips() {
    let dir = corpus_dir();
    let mut files = 0;
    let mut lines = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
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
    assert!(files >= 2 && lines >= 3, "corpus too small: {files} files, {lines} lines in {}", dir.display());
}
