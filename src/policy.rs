//! `nightjar policy`: validate TracingPolicy files; add, delete and list them in the agent.
use std::process::ExitCode;

use crate::{
    cli::{Global, PolicyArgs, PolicyCommand},
    control::{self, Request},
};

pub fn main(global: &Global, args: PolicyArgs) -> ExitCode {
    match args.command {
        PolicyCommand::Validate { files } => validate(&files),
        PolicyCommand::Add { file } => {
            let yaml = match pipeline::config::read_file(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("nightjar: {e}");
                    return ExitCode::from(crate::EXIT_USAGE);
                }
            };
            let source = file.display().to_string();
            if let Err(e) = sensor::policy::parse(&source, &yaml) {
                eprintln!("{e}");
                return ExitCode::from(crate::EXIT_USAGE);
            }
            remote(global, &Request::PolicyAdd { source, yaml }, true)
        }
        PolicyCommand::Delete { name } => remote(global, &Request::PolicyDelete { name }, true),
        PolicyCommand::List => remote(global, &Request::PolicyList, false),
    }
}

fn validate(files: &[std::path::PathBuf]) -> ExitCode {
    let features = sensor::probe::probe(false).ok();
    // Without loading programs only kprobes are known; fentry and BPF-LSM are learned by
    // the agent at start (`nightjar status` shows what it chose).
    let mut kernel = sensor::policy::compile::KernelHooks::tracepoints_only(
        "unknown without a running agent (it tries a BPF-LSM program at start)",
    );
    kernel.kprobes = features.as_ref().is_some_and(|f| f.kprobes);
    let env = sensor::policy::compile::Env {
        tracefs: features.and_then(|f| f.tracefs).unwrap_or_else(|| "/sys/kernel/tracing".into()),
        host_ns: sensor::hooks::process::host_namespaces(),
        kernel: kernel.with_symbols(),
    };
    let mut bad = 0;
    for f in files {
        let planned = sensor::policy::load(f).and_then(|l| {
            let hooks = sensor::policy::compile::plan(&l, &env)?;
            Ok((l, hooks))
        });
        match planned {
            Ok((l, hooks)) => {
                println!("{}: ok ({} {})", f.display(), l.policy.kind, l.policy.metadata.name);
                if let Some(scope) = sensor::policy::scope::Scope::of(&l) {
                    println!("  scope: {}", scope.describe());
                }
                for h in hooks {
                    println!("  {} served by {} (backend: {})", h.function, h.served_by, h.backend);
                }
            }
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    if bad > 0 {
        ExitCode::from(crate::EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

fn remote(global: &Global, req: &Request, input_error_is_usage: bool) -> ExitCode {
    let socket = match crate::config::load(global) {
        Ok(c) => c.control.socket,
        Err(e) => {
            eprintln!("nightjar: invalid config: {e}");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    match control::call(&socket, req) {
        Ok(r) if r.ok => {
            println!("{}", serde_json::to_string_pretty(&r.result).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(r) => {
            eprintln!("nightjar: {}", r.error.unwrap_or_default());
            if input_error_is_usage {
                ExitCode::from(crate::EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("nightjar: {e}");
            ExitCode::FAILURE
        }
    }
}
