//! Load generator for the benchmark harness: a tight loop of `openat`+`close` on a file, or
//! of fork+exec of a binary, of calls of its own function `nightjar_bench_target` (a uprobe
//! target), of `getppid` (a syscall hook target), or of TCP connect+close on loopback,
//! optionally paced to a target rate. Prints one line: `ops=<n> secs=<wall> rate=<ops/s>`.
//!
//! loadgen open PATH COUNT [RATE]
//! loadgen exec PATH COUNT [RATE]
//! loadgen call - COUNT
//! loadgen getppid - COUNT
//! loadgen connect - COUNT [RATE]
//!
//! `connect` first moves into a network namespace of its own (root) and brings its loopback
//! up, listens on 127.0.0.1 there, then per op: a socket, `connect` to the listener,
//! `accept` of it, and both closed, the client's with `SO_LINGER` 0 (a reset: no TIME_WAIT,
//! so a million connects never run out of ports). Nothing leaves that namespace.
use std::{ffi::CString, time::Instant};

mod conn;

/// What the uprobe row of the benchmark hooks: one call per op, never inlined.
#[no_mangle]
#[inline(never)]
pub extern "C" fn nightjar_bench_target(i: u64) -> u64 {
    std::hint::black_box(i.wrapping_mul(31))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: loadgen open|exec PATH COUNT [RATE_PER_SEC]");
        std::process::exit(2);
    }
    let (mode, path) = (args[1].as_str(), args[2].as_str());
    let count: u64 = args[3].parse().unwrap_or_else(|_| {
        eprintln!("loadgen: COUNT must be a number");
        std::process::exit(2)
    });
    let rate: Option<f64> = args.get(4).and_then(|r| r.parse().ok()).filter(|r: &f64| *r > 0.0);
    let Ok(cpath) = CString::new(path) else {
        eprintln!("loadgen: PATH has a NUL byte");
        std::process::exit(2)
    };
    let argv = [cpath.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let listener = match mode {
        "connect" => Some(conn::Listener::in_own_netns().unwrap_or_else(|e| {
            eprintln!("loadgen: connect: {e}");
            std::process::exit(1)
        })),
        _ => None,
    };
    let start = Instant::now();
    for i in 0..count {
        if let Some(r) = rate {
            // Pace: op i is due at i / r seconds.
            let due = i as f64 / r;
            let now = start.elapsed().as_secs_f64();
            if due > now {
                std::thread::sleep(std::time::Duration::from_secs_f64(due - now));
            }
        }
        match mode {
            "open" => {
                // SAFETY: a valid NUL-terminated path; the fd is closed at once.
                let fd = unsafe { libc::openat(libc::AT_FDCWD, cpath.as_ptr(), libc::O_RDONLY) };
                if fd < 0 {
                    eprintln!("loadgen: open {path}: {}", std::io::Error::last_os_error());
                    std::process::exit(1);
                }
                // SAFETY: fd was just opened by us.
                unsafe { libc::close(fd) };
            }
            "exec" => {
                // SAFETY: vfork-free fork; the child only calls execve/_exit.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    // SAFETY: argv/envp are NULL-terminated arrays of valid C strings.
                    unsafe {
                        libc::execve(cpath.as_ptr(), argv.as_ptr(), envp.as_ptr());
                        libc::_exit(127);
                    }
                }
                if pid < 0 {
                    eprintln!("loadgen: fork: {}", std::io::Error::last_os_error());
                    std::process::exit(1);
                }
                let mut status = 0;
                // SAFETY: waiting for the child we forked.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            }
            "call" => {
                std::hint::black_box(nightjar_bench_target(i));
            }
            "getppid" => {
                // SAFETY: a syscall without arguments.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }
            "connect" => {
                if let Some(Err(e)) = listener.as_ref().map(conn::Listener::connect_close) {
                    eprintln!("loadgen: connect: {e}");
                    std::process::exit(1);
                }
            }
            other => {
                eprintln!("loadgen: unknown mode {other:?} (open, exec, call, getppid or connect)");
                std::process::exit(2);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("ops={count} secs={secs:.6} rate={:.1}", count as f64 / secs);
}
