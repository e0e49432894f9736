//! nightjar: the command line. It parses flags, loads the config and wires the sensor,
//! the pipeline and the sinks together; the work itself lives in those crates.
mod api_agent;
mod cli;
mod config;
mod control;
mod getevents;
mod memory;
mod pods;
mod policy;
mod run;
mod status;

#[cfg(test)]
mod fuzz_replay;

use std::process::ExitCode;

use clap::Parser;

/// Events are many small allocations freed on other threads: mimalloc's per-thread free
/// lists cost about a third of glibc malloc's time on the event path (bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a bad config, policy or command line: the user must fix input.
pub const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run(args) => {
            memory::tune();
            run::main(&cli.global, args)
        }
        cli::Command::Getevents(args) => getevents::main(&cli.global, *args),
        cli::Command::Policy(args) => policy::main(&cli.global, args),
        cli::Command::Status(args) => status::main(&cli.global, args),
        cli::Command::Config(args) => config::print_main(&cli.global, args),
    }
}
