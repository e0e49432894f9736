//! `nightjar getevents`: print events, live from the running agent or from a JSON export
//! (a file or stdin; nightjar's or Tetragon's), with filters.
use std::{
    io::{BufRead, BufReader, Write},
    process::ExitCode,
};

use pipeline::Event;
use regex::Regex;
use sinks::stdout::{format_event, Colour, StdoutFormat};

use crate::{
    cli::{GeteventsArgs, Global, Output},
    control::{self, Request},
};

/// The filters of the command line; all given ones must match.
pub struct Filters {
    namespaces: Vec<String>,
    pod: Option<Regex>,
    process: Option<Regex>,
    event_types: Vec<String>,
    policy_names: Vec<String>,
    hosts: Vec<String>,
}

impl Filters {
    pub fn new(a: &GeteventsArgs) -> Result<Self, String> {
        let re = |name: &str, v: &Option<String>| {
            v.as_deref()
                .map(|r| Regex::new(r).map_err(|e| format!("--{name} {r:?} is not a valid regex: {e}")))
                .transpose()
        };
        let mut event_types = Vec::new();
        for t in &a.event_types {
            match pipeline::Kind::from_event_type(t) {
                Some(k) => event_types.push(k.key().to_owned()),
                None => {
                    return Err(format!(
                        "--event-types: unknown type {t:?} (expected {})",
                        pipeline::Kind::event_type_names()
                    ))
                }
            }
        }
        Ok(Filters {
            namespaces: a.namespace.clone(),
            pod: re("pod", &a.pod)?,
            process: re("process", &a.process)?,
            event_types,
            policy_names: a.policy_names.clone(),
            hosts: a.host.clone(),
        })
    }

    pub fn matches(&self, e: &Event) -> bool {
        if !self.event_types.is_empty() && !self.event_types.iter().any(|t| t == e.kind.key()) {
            return false;
        }
        if !self.hosts.is_empty() && !e.node_name.as_ref().is_some_and(|n| self.hosts.contains(n)) {
            return false;
        }
        let pod = e.process().and_then(|p| p.pod.as_ref());
        if !self.namespaces.is_empty()
            && !pod.and_then(|p| p.namespace.as_ref()).is_some_and(|n| self.namespaces.contains(n))
        {
            return false;
        }
        if let Some(re) = &self.pod {
            if !pod.and_then(|p| p.name.as_deref()).is_some_and(|n| re.is_match(n)) {
                return false;
            }
        }
        if let Some(re) = &self.process {
            if !e.process().and_then(|p| p.binary.as_deref()).is_some_and(|b| re.is_match(b)) {
                return false;
            }
        }
        if !self.policy_names.is_empty() {
            let policy = pipeline::stages::key::policy_name(e);
            if !policy.is_some_and(|p| self.policy_names.iter().any(|n| n == p)) {
                return false;
            }
        }
        true
    }
}

pub fn main(global: &Global, args: GeteventsArgs) -> ExitCode {
    let filters = match Filters::new(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("nightjar getevents: {e}");
            return ExitCode::from(crate::EXIT_USAGE);
        }
    };
    let format = match args.output {
        Output::Json => StdoutFormat::Json,
        Output::Compact => StdoutFormat::Compact,
    };
    // SAFETY: isatty only inspects the descriptor.
    let colour = if unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1 { Colour::Ansi } else { Colour::Plain };
    let (name, input): (String, Box<dyn BufRead>) = match &args.file {
        Some(f) if f.as_os_str() == "-" => ("<stdin>".into(), Box::new(BufReader::new(std::io::stdin().lock()))),
        Some(f) => match std::fs::File::open(f) {
            Ok(h) => (f.display().to_string(), Box::new(BufReader::new(h))),
            Err(e) => {
                eprintln!("nightjar getevents: cannot open {}: {e}", f.display());
                return ExitCode::from(crate::EXIT_USAGE);
            }
        },
        None => {
            let socket = match crate::config::load(global) {
                Ok(c) => c.control.socket,
                Err(e) => {
                    eprintln!("nightjar: invalid config: {e}");
                    return ExitCode::from(crate::EXIT_USAGE);
                }
            };
            match control::subscribe(&socket, &Request::Subscribe) {
                Ok(r) => (format!("agent {}", socket.display()), Box::new(r)),
                Err(e) => {
                    eprintln!("nightjar getevents: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    print_stream(&name, input, &filters, format, colour)
}

fn print_stream(
    name: &str,
    input: Box<dyn BufRead>,
    filters: &Filters,
    format: StdoutFormat,
    colour: Colour,
) -> ExitCode {
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
        if let Some(notice) = line.strip_prefix(control::NOTICE_PREFIX) {
            eprintln!("nightjar getevents: {notice}");
            continue;
        }
        match Event::from_json(&line) {
            Ok(ev) => {
                if !filters.matches(&ev) {
                    continue;
                }
                if writeln!(out, "{}", format_event(&ev, format, colour)).and_then(|_| out.flush()).is_err() {
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
