//! The fuzz harnesses of `fuzz/harness/` as tests, on the stable toolchain and the test
//! build: each target's seeds and regression inputs (`fuzz/seeds/<target>/`), then random
//! mutations of them for a bounded time (`NIGHTJAR_FUZZ_SECS`, 20 s each). No coverage
//! feedback (scripts/fuzz.sh runs the same harnesses under libFuzzer for that): inputs a
//! target accepts join the pool, so mutations reach past the parser into the checks.
//! A panic fails the test and saves the input to `target/fuzz-failures/`; an input that
//! runs for over a minute, or a test binary over 2 GiB resident, aborts the binary, saving
//! the input running then. `NIGHTJAR_FUZZ_SEED` replays a run (its seed is printed first,
//! so that an abort the watchdog did not see — a refused allocation — can be replayed).
use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use crate::control::protocol;

#[path = "../fuzz/harness/config.rs"]
mod config;
#[path = "../fuzz/harness/control_protocol.rs"]
mod control_protocol;
#[path = "../fuzz/harness/policy.rs"]
mod policy;
#[path = "../fuzz/harness/tail_lines.rs"]
mod tail_lines;

struct Target {
    name: &'static str,
    /// Files or directories, from the repository's root.
    seeds: &'static [&'static str],
    max_len: usize,
    tokens: &'static [&'static str],
    run: fn(&[u8]) -> bool,
}

const YAML: &[&str] = &[
    ": ",
    "\n",
    "\n  ",
    "\n    ",
    "\n- ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "'",
    "\"",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "~",
    "null",
    "true",
    "? ",
    "|\n  ",
    ">-\n  ",
    "<<: *a",
    "---\n",
    "...\n",
    "#@ ",
    "=",
    ".",
    "\\u0000",
    "\t",
];
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "4096",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "1000000000000000",
    "1e400",
    "0x",
    "0xffffffffffffffff",
    "-0",
    ".nan",
    "64KiB",
    "1MiB",
    "16EiB",
    "0o7777",
    "0o17777",
];

/// A config that loads must pass or fail the check `config --check` makes of it, cleanly.
fn config_one(data: &[u8]) -> bool {
    config::one(data, |c: &crate::config::Config| {
        let ctx = pipeline::stages::Context { node_name: "fuzz".into() };
        pipeline::stages::check(&c.pipeline, &ctx).is_ok()
    })
}

const TARGETS: [Target; 4] = [
    Target {
        name: "config",
        seeds: &["config/default.yaml", "config/docker", "fuzz/seeds/config"],
        max_len: 64 << 10,
        tokens: YAML,
        run: config_one,
    },
    Target {
        name: "policy",
        seeds: &["config/policies", "fuzz/seeds/policy"],
        max_len: 64 << 10,
        tokens: YAML,
        run: policy::one,
    },
    Target {
        name: "control_protocol",
        seeds: &["fuzz/seeds/control_protocol"],
        max_len: 8 << 10,
        tokens: &[
            "\n",
            "{\"cmd\":\"",
            "\"}",
            "\",\"",
            "\":\"",
            "status",
            "policy_add",
            "\\\"",
            "\\n",
            "\\ud800",
            "null",
            "[",
            "]",
        ],
        run: control_protocol::one,
    },
    Target {
        name: "tail_lines",
        seeds: &["tests/corpus/tetragon", "fuzz/seeds/tail_lines"],
        max_len: 8 << 10,
        tokens: &["\n", "{", "}", "\"", "\r\n", "\n\n", "\u{0}"],
        run: tail_lines::one,
    },
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn seeds(t: &Target) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for s in t.seeds {
        let p = root().join(s);
        match std::fs::read_dir(&p) {
            Ok(dir) => files.extend(dir.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file())),
            Err(_) => files.push(p),
        }
    }
    files.sort();
    let mut out = vec![Vec::new()];
    for f in files {
        let data = std::fs::read(&f).unwrap_or_else(|e| panic!("seed {}: {e}", f.display()));
        out.push(data);
    }
    out
}

/// Words of the seeds (keys, values) as mutation tokens, beside the target's own.
fn dictionary(t: &Target, seeds: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut words: Vec<Vec<u8>> = t.tokens.iter().chain(NUMBERS).map(|s| s.as_bytes().to_vec()).collect();
    for s in seeds {
        for w in s.split(|b| !(b.is_ascii_alphanumeric() || *b == b'_')) {
            if (2..=32).contains(&w.len()) {
                words.push(w.to_vec());
            }
        }
    }
    words.sort();
    words.dedup();
    words
}

fn mutate(rng: &mut fastrand::Rng, data: &mut Vec<u8>, pool: &[Vec<u8>], dict: &[Vec<u8>]) {
    for _ in 0..rng.usize(1..=4) {
        let at = rng.usize(..=data.len());
        match rng.u8(..7) {
            0 if !data.is_empty() => {
                let i = rng.usize(..data.len());
                data[i] ^= 1 << rng.u8(..8);
            }
            1 | 2 => {
                let w = &dict[rng.usize(..dict.len())];
                data.splice(at..at, w.iter().copied());
            }
            3 if !data.is_empty() => {
                let end = (at + rng.usize(1..=16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            4 if !data.is_empty() => {
                // Repeats a piece of itself: nesting, long lines, many keys.
                let from = rng.usize(..data.len());
                let end = (from + rng.usize(1..=64)).min(data.len());
                let piece = data[from..end].repeat(rng.usize(1..=8));
                data.splice(at..at, piece);
            }
            5 => {
                let other = &pool[rng.usize(..pool.len())];
                let from = rng.usize(..=other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                let b = *rng.choice(b"[{\"'\n -:#\\\0\xff").unwrap_or(&b'[');
                data.splice(at..at, std::iter::repeat_n(b, rng.usize(1..=100)));
            }
        }
    }
}

/// What the watchdog sees: the input running now and how many have run.
struct Running {
    input: Mutex<Vec<u8>>,
    runs: AtomicU64,
    done: AtomicBool,
}

fn save(name: &str, data: &[u8]) -> PathBuf {
    let dir = root().join("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let hash = data.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3));
    let p = dir.join(format!("{name}-{hash:016x}"));
    let _ = std::fs::write(&p, data);
    p
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn watchdog(name: &'static str, r: Arc<Running>) {
    let limit = Duration::from_secs(60);
    let max_rss_kib = 2 << 20;
    std::thread::spawn(move || {
        let (mut last, mut since) = (u64::MAX, Instant::now());
        while !r.done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
            let n = r.runs.load(Ordering::SeqCst);
            let rss = rss_kib();
            let why = if rss > max_rss_kib {
                format!("the test binary holds {} MiB", rss >> 10)
            } else if n == last && since.elapsed() > limit {
                format!("an input has run for over {limit:?} (a hang)")
            } else {
                if n != last {
                    (last, since) = (n, Instant::now());
                }
                continue;
            };
            let input = r.input.lock().map(|g| g.clone()).unwrap_or_default();
            let p = save(name, &input);
            eprintln!("[fuzz] {name}: {why}; the input running: {}", p.display());
            std::process::abort();
        }
    });
}

fn fuzz(t: &Target) {
    let secs: u64 = std::env::var("NIGHTJAR_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let seed: u64 =
        std::env::var("NIGHTJAR_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("[fuzz] {}: seed {seed}, {secs} s", t.name);
    let mut pool = seeds(t);
    let dict = dictionary(t, &pool);
    let running =
        Arc::new(Running { input: Mutex::new(Vec::new()), runs: AtomicU64::new(0), done: AtomicBool::new(false) });
    watchdog(t.name, running.clone());
    let run = |data: &[u8], what: &str| -> bool {
        if let Ok(mut g) = running.input.lock() {
            g.clear();
            g.extend_from_slice(data);
        }
        let r = catch_unwind(AssertUnwindSafe(|| (t.run)(data)));
        running.runs.fetch_add(1, Ordering::SeqCst);
        r.unwrap_or_else(|_| {
            let p = save(t.name, data);
            running.done.store(true, Ordering::SeqCst);
            panic!("{}: {what} panicked (seed {seed}); the input is in {}", t.name, p.display())
        })
    };
    let mut accepted = 0;
    for s in pool.clone() {
        accepted += usize::from(run(&s, "a seed"));
    }
    let seeded = pool.len();
    let mut rng = fastrand::Rng::with_seed(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let mut data = pool[rng.usize(..pool.len())].clone();
        mutate(&mut rng, &mut data, &pool, &dict);
        data.truncate(t.max_len);
        runs += 1;
        if run(&data, "a mutated input") {
            accepted += 1;
            if pool.len() < 1024 {
                pool.push(data);
            }
        }
    }
    running.done.store(true, Ordering::SeqCst);
    eprintln!("[fuzz] {}: {seeded} seeds, {runs} mutations in {secs} s, {accepted} accepted", t.name);
    assert!(runs > 0 || secs == 0, "{}: no input ran", t.name);
}

#[test]
fn fuzz_config() {
    fuzz(&TARGETS[0]);
}

#[test]
fn fuzz_policy() {
    fuzz(&TARGETS[1]);
}

#[test]
fn fuzz_control_protocol() {
    fuzz(&TARGETS[2]);
}

#[test]
fn fuzz_tail_lines() {
    fuzz(&TARGETS[3]);
}
