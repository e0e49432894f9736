//! `nightjar policy`: validate TracingPolicy files.
use std::process::ExitCode;

use crate::cli::{PolicyArgs, PolicyCommand};

pub fn main(args: PolicyArgs) -> ExitCode {
    match args.command {
        PolicyCommand::Validate { files } => {
            let mut bad = 0;
            for f in &files {
                match sensor::policy::load(f) {
                    Ok(p) => println!("{}: ok ({} {})", f.display(), p.kind, p.metadata.name),
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
    }
}
