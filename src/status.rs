//! `nightjar status`: what this kernel offers and which hook backends nightjar can use.
use std::process::ExitCode;

use crate::cli::{Global, StatusArgs};

pub fn main(_global: &Global, args: StatusArgs) -> ExitCode {
    let f = match sensor::probe::probe(false) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("nightjar status: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!("{}", serde_json::json!({ "kernel": f }));
        return ExitCode::SUCCESS;
    }
    let yn = |b: bool| if b { "yes" } else { "no" };
    println!("kernel:        {}", f.kernel_release);
    println!("btf:           {}", yn(f.btf));
    println!(
        "tracefs:       {}",
        f.tracefs.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "not mounted".into())
    );
    println!("kprobes:       {}", yn(f.kprobes));
    println!("bpf lsm:       {}", yn(f.bpf_lsm));
    println!("running as:    euid {}", f.euid);
    ExitCode::SUCCESS
}
