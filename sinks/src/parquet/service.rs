//! The I/O of the Parquet sink: files written under a hidden temporary name and renamed
//! into place when complete; partial files an unclean stop left are removed at start.
use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
    time::Instant,
};

use parquet::arrow::ArrowWriter;
use pipeline::time::Timestamp;

use super::ParquetSinkError;

/// A file being written.
pub struct OpenFile {
    pub writer: ArrowWriter<File>,
    pub tmp: PathBuf,
    pub dest: PathBuf,
    pub opened: Instant,
    pub rows: u64,
}

/// Writes the footer, fsyncs, renames into place, fsyncs the directory.
pub fn close_file(f: OpenFile) -> Result<u64, ParquetSinkError> {
    let OpenFile { mut writer, tmp, dest, rows, .. } = f;
    let finish = |e: io::Error| ParquetSinkError::Finish { path: tmp.clone(), source: e };
    writer.finish().map_err(|source| ParquetSinkError::Write { path: tmp.clone(), source })?;
    writer.inner().sync_all().map_err(finish)?;
    drop(writer);
    std::fs::rename(&tmp, &dest).map_err(finish)?;
    if let Some(dir) = dest.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(finish)?;
    }
    tracing::debug!(file = %dest.display(), rows, "parquet file complete");
    Ok(rows)
}

/// `dt=YYYY-MM-DD/hour=HH` of a time (UTC).
pub fn partition_of(t: Timestamp) -> String {
    let nanos = t.unix_nanos();
    let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(0);
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(dt) => dt.format("dt=%Y-%m-%d/hour=%H").to_string(),
        None => "dt=1970-01-01/hour=00".to_owned(),
    }
}

/// Removes `.*.parquet.tmp` files under `root` (two partition levels deep); returns them.
pub fn remove_partial_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for entry in rd.flatten() {
            let p = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir && depth < 2 {
                walk(&p, depth + 1, out);
            } else if !is_dir && name.starts_with(".part-") && name.ends_with(".parquet.tmp") {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                match std::fs::remove_file(&p) {
                    Ok(()) => {
                        tracing::warn!(file = %p.display(), bytes = size,
                            "parquet sink: removed a partial file left by an unclean stop; its rows were lost");
                        pipeline::metrics::count_stage_drop("sink_parquet", "partial_file", 1);
                        out.push(p);
                    }
                    Err(e) => {
                        tracing::error!(file = %p.display(), error = %e, "parquet sink: cannot remove a partial file")
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(root, 0, &mut out);
    out
}
