use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipeline::config::ByteSize;
use serde_json::json;

use std::{fs::File, path::Path, time::Duration};

use pipeline::time::Timestamp;

use super::{partition_of, ParquetConfig, ParquetSink};
use crate::{blocking::BlockingSink, test_util::*, SendOutcome};

pub const READBACK_PY: &str = include_str!("readback.py");

/// Every file under `root` (relative names), complete and temporary.
fn files(root: &Path) -> Vec<String> {
    fn walk(d: &Path, root: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), root, out);
            } else {
                out.push(e.path().strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Rows of a complete file, read with the parquet crate's own reader.
fn rows_in(path: &Path) -> usize {
    let r = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap().build().unwrap();
    r.map(|b| b.unwrap().num_rows()).sum()
}

fn cfg(dir: &Path) -> ParquetConfig {
    ParquetConfig { enabled: true, path: dir.to_owned(), ..ParquetConfig::default() }
}

#[tokio::test]
async fn n_events_read_back_with_pyarrow_and_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ParquetConfig { row_group_rows: 500, max_file_size: ByteSize(200 << 10), ..cfg(&dir.path().join("ds")) };
    let n: u64 = 6000;
    // One event every 2 s from 10:00: the set spans hours 10 to 13.
    let events: Vec<_> = (0..n).map(|i| seq_event_at(i, BASE_NANOS + i as i128 * 2_000_000_000)).collect();
    let mut s = ParquetSink::new(&cfg).unwrap();
    for chunk in events.chunks(256) {
        assert!(matches!(s.send(chunk), SendOutcome::Held));
    }
    // Before the flush, nothing a reader would pick up is incomplete.
    for f in files(&cfg.path) {
        let name = f.rsplit('/').next().unwrap();
        assert!(name.ends_with(".parquet") || (name.starts_with(".part-") && name.ends_with(".parquet.tmp")), "{f}");
    }
    s.flush().unwrap();
    let all = files(&cfg.path);
    assert!(all.iter().all(|f| f.ends_with(".parquet")), "temporary files left after flush: {all:?}");
    let root = cfg.path.display().to_string();
    let got = run_python(READBACK_PY, &[&root]);

    assert_eq!(got["rows"], json!(n), "pyarrow row count");
    assert_eq!(got["duck_rows"], json!(n), "duckdb row count");
    assert!(got["files"].as_array().unwrap().len() > 4, "files must roll by size: {}", got["files"]);
    for f in got["files"].as_array().unwrap() {
        let f = f.as_str().unwrap();
        assert!(f.starts_with("/dt=2026-01-01/hour=1"), "hive layout: {f}");
    }
    assert!(got["row_groups"].as_u64().unwrap() >= n / 500);
    assert!(got["max_row_group_rows"].as_u64().unwrap() <= 500);
    assert_eq!(got["codecs"], json!(["ZSTD"]));
    let types = &got["types"];
    for (col, ty) in [
        ("time", "timestamp[ns, tz=UTC]"),
        ("event_type", "string"),
        ("binary", "string"),
        ("pid", "uint32"),
        ("uid", "uint32"),
        ("event", "string"),
    ] {
        assert_eq!(types[col], json!(ty), "pyarrow type of {col}: {types}");
    }
    let dtypes = &got["duck_types"];
    for (col, ty) in
        [("time", "TIMESTAMP WITH TIME ZONE"), ("pid", "UINTEGER"), ("namespace", "VARCHAR"), ("action", "VARCHAR")]
    {
        assert_eq!(dtypes[col], json!(ty), "duckdb type of {col}: {dtypes}");
    }
    assert_eq!(got["json_matches_pid"], json!(true));
    // The filtered query, against what the events say.
    let expect: Vec<u64> = (0..n)
        .filter(|&i| expected_action(i) == Some("SIGKILL") && expected_namespace(i).as_deref() == Some("ns1"))
        .map(|i| 1000 + i)
        .collect();
    assert!(!expect.is_empty());
    assert_eq!(got["duck_sigkill_ns1_pids"], json!(expect));
    // Partitioned by event time: 1800 events per hour (2 s apart), the rest in hour 13.
    assert_eq!(
        got["duck_per_hour"],
        json!([
            ["2026-01-01", "10", 1800],
            ["2026-01-01", "11", 1800],
            ["2026-01-01", "12", 1800],
            ["2026-01-01", "13", 600]
        ])
    );
    assert_eq!(got["duck_min_time_ns"], json!(BASE_NANOS as i64));
}

#[tokio::test]
async fn files_close_by_age_and_killed_writer_leaves_only_a_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ParquetConfig { max_file_age_secs: 60, ..cfg(dir.path()) };
    let mut s = ParquetSink::new(&cfg).unwrap();
    let batch: Vec<_> = (0..100).map(seq_event).collect();
    assert!(matches!(s.send(&batch), SendOutcome::Held));
    let only_tmp = files(dir.path());
    assert_eq!(only_tmp.len(), 1, "{only_tmp:?}");
    assert!(only_tmp[0].starts_with("dt=2026-01-01/hour=10/.part-") && only_tmp[0].ends_with(".parquet.tmp"));
    // Not yet old: a tick keeps it open. Aged: the tick completes it.
    s.tick().unwrap();
    assert_eq!(files(dir.path()), only_tmp);
    for f in s.open_files() {
        f.opened -= Duration::from_secs(61);
    }
    s.tick().unwrap();
    let done = files(dir.path());
    assert_eq!(done.len(), 1);
    assert!(done[0].ends_with(".parquet") && !done[0].contains("/."), "{done:?}");
    assert_eq!(rows_in(&dir.path().join(&done[0])), 100);

    // A writer that dies mid-file (what SIGKILL does: no footer, no rename).
    assert!(matches!(s.send(&batch), SendOutcome::Held));
    std::mem::forget(s);
    let partial: Vec<_> = files(dir.path()).into_iter().filter(|f| f.ends_with(".tmp")).collect();
    assert_eq!(partial.len(), 1);
    // The next start removes it (it cannot be read without a footer) and says so.
    let s2 = ParquetSink::new(&cfg).unwrap();
    assert_eq!(s2.recovered, vec![dir.path().join(&partial[0])]);
    assert_eq!(files(dir.path()), done);
}

#[test]
fn uncreatable_path_is_a_clear_error() {
    let e = ParquetSink::new(&cfg(Path::new("/proc/nightjar/pq"))).err().unwrap().to_string();
    assert!(e.contains("parquet sink: cannot create directory /proc/nightjar/pq"), "{e}");
}

#[tokio::test]
async fn full_disk_is_a_clear_retryable_error_and_leaves_only_complete_files() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = SmallTmpfs::mount(&dir.path().join("full"), "256k");
    let cfg = ParquetConfig { row_group_rows: 100, max_file_size: ByteSize(16 << 10), ..cfg(mnt.path()) };
    let mut s = ParquetSink::new(&cfg).unwrap();
    let mut failure = None;
    for i in 0..2000u64 {
        let batch: Vec<_> = (i * 100..i * 100 + 100).map(seq_event).collect();
        match s.send(&batch) {
            SendOutcome::Held => {}
            other => {
                failure = Some(other);
                break;
            }
        }
    }
    match failure {
        Some(SendOutcome::Retryable(m)) => {
            assert!(m.contains("parquet sink: cannot") && m.contains(&mnt.path().display().to_string()), "{m}");
            assert!(m.contains("No space left"), "{m}");
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
    // What is named *.parquet is complete and readable.
    let complete: Vec<_> = files(mnt.path()).into_iter().filter(|f| f.ends_with(".parquet")).collect();
    assert!(!complete.is_empty());
    for f in &complete {
        assert!(rows_in(&mnt.path().join(f)) > 0, "{f}");
    }
    // With room again, the sink recovers.
    for f in &complete {
        std::fs::remove_file(mnt.path().join(f)).unwrap();
    }
    assert!(matches!(s.send(&[seq_event(0)]), SendOutcome::Held));
    s.flush().unwrap();
}

#[test]
fn partition_of_uses_utc_date_and_hour() {
    assert_eq!(partition_of(Timestamp::from_unix_nanos(BASE_NANOS)), "dt=2026-01-01/hour=10");
    assert_eq!(
        partition_of(Timestamp::from_unix_nanos(BASE_NANOS + 14 * 3600 * 1_000_000_000)),
        "dt=2026-01-02/hour=00"
    );
}
