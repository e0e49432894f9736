//! Rotated JSON-lines file sink — what SOCs tail, like `/var/log/tetragon/tetragon.log`.
//!
//! Guarantees, for a reader that follows the file by name (`tail -F`):
//! - whole lines only: a batch is encoded first and written with one `write_all`; if the
//!   write fails part-way (disk full), the file is truncated back to where the batch began;
//! - rotation happens between batches: the live file is synced, hard-linked to
//!   `<path>.1`, and a fresh file is renamed over `<path>` (so the name always exists);
//!   nothing is written to the old file afterwards, so a reader that drains it before
//!   switching sees every line exactly once;
//! - backups are gzipped in a background thread (`<path>.1.gz`), via a temporary name.
//!
//! SIGHUP (external logrotate) closes the file and reopens `<path>` before the next batch
//! or at the next housekeeping tick, whichever comes first.
pub mod config;
pub mod encoder;
mod rotate;
pub mod service;
pub mod sink;
#[cfg(test)]
mod tests;

pub use config::{FileConfig, FsyncPolicy, OnError};
pub use service::{FileSinkError, FileWriter};
pub use sink::FileSink;
