//! `nightjar getevents`: print events from a JSON export (file or stdin).
use std::{
    io::{BufRead, BufReader, Write},
    process::ExitCode,
};

use pipeline::Event;
use sinks::stdout::{format_event, Colour, StdoutFormat};

use crate::cli::{GeteventsArgs, Output};

pub fn main(args: GeteventsArgs) -> ExitCode {
    let input: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        match std::fs::File::open(&args.file) {
            Ok(f) => Box::new(BufReader::new(f)),
            Err(e) => {
                eprintln!("nightjar getevents: cannot open {}: {e}", args.file.display());
                return ExitCode::from(crate::EXIT_USAGE);
            }
        }
    };
    let name = if args.file.as_os_str() == "-" { "<stdin>".to_owned() } else { args.file.display().to_string() };
    let format = match args.output {
        Output::Json => StdoutFormat::Json,
        Output::Compact => StdoutFormat::Compact,
    };
    // SAFETY: isatty only inspects the descriptor.
    let colour = if unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1 { Colour::Ansi } else { Colour::Plain };
    let mut out = std::io::stdout().lock();
    let mut bad = 0u64;
    for (i, line) in input.lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{name}:{}: cannot read: {e}", i + 1);
                return ExitCode::FAILURE;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match Event::from_json(&line) {
            Ok(ev) => {
                if writeln!(out, "{}", format_event(&ev, format, colour)).is_err() {
                    return ExitCode::SUCCESS; // reader went away (e.g. `| head`)
                }
            }
            Err(e) => {
                bad += 1;
                eprintln!("{name}:{}: skipped, not an event: {e}", i + 1);
            }
        }
    }
    if bad > 0 {
        eprintln!("{name}: {bad} line(s) skipped");
    }
    ExitCode::SUCCESS
}
