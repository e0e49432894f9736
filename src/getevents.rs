//! `nightjar getevents`: print events, live from the running agent or from a JSON export
//! (a file or stdin; nightjar's or Tetragon's), with filters.
use std::{
    io::{BufRead, BufReader, Write},
    process::ExitCode,
};

use pipeline::{
    stages::{
        filter::{Filter, FilterConfig, Lines},
        Out, Stage,
    },
    Event,
};
use regex::RegexSet;
use sinks::stdout::{format_event, tetra_timestamp, Colour, StdoutFormat};

use crate::{
    cli::{ColorMode, GeteventsArgs, Global, Output},
    control::{self, Request},
};

/// The filters of the command line; all given ones must match.
pub struct Filters {
    namespaces: Vec<String>,
    namespace_re: Option<RegexSet>,
    pod: Option<RegexSet>,
    process: Option<RegexSet>,
    event_types: Vec<String>,
    policy_names: Vec<String>,
    host_only: bool,
    nodes: Vec<String>,
    /// `--include-fields` / `--exclude-fields`, as the pipeline's field filters apply them.
    fields: Option<Filter>,
}

impl Filters {
    pub fn new(a: &GeteventsArgs) -> Result<Self, String> {
        let re = |name: &str, v: &[String]| {
            (!v.is_empty())
                .then(|| RegexSet::new(v).map_err(|e| format!("--{name} {v:?} is not a valid regex: {e}")))
                .transpose()
        };
        let mut names = a.event_types.clone();
        if a.process_only {
            names.extend(["PROCESS_EXEC".to_owned(), "PROCESS_EXIT".to_owned()]);
        }
        let mut event_types = Vec::new();
        for t in &names {
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
        let mut specs = Vec::new();
        for (flag, list, action) in
            [("include-fields", &a.include_fields, "INCLUDE"), ("exclude-fields", &a.exclude_fields, "EXCLUDE")]
        {
            if !list.is_empty() {
                let spec = serde_json::json!({ "fields": list.join(","), "action": action });
                specs.push(serde_json::from_value(spec).map_err(|e| format!("--{flag}: {e}"))?);
            }
        }
        let fields = (!specs.is_empty())
            .then(|| {
                Filter::new(&FilterConfig { field_filters: Lines::List(specs), ..Default::default() })
                    .map_err(|e| format!("--include-fields/--exclude-fields: {e}"))
            })
            .transpose()?;
        Ok(Filters {
            namespaces: a.namespace.clone(),
            namespace_re: re("namespace-regex", &a.namespace_regex)?,
            pod: re("pod", &a.pod)?,
            process: re("process", &a.process)?,
            event_types,
            policy_names: a.policy_names.clone(),
            host_only: a.host,
            nodes: a.node.clone(),
            fields,
        })
    }

    pub fn matches(&self, e: &Event) -> bool {
        if !self.event_types.is_empty() && !self.event_types.iter().any(|t| t == e.kind.key()) {
            return false;
        }
        if !self.nodes.is_empty() && !e.node_name.as_ref().is_some_and(|n| self.nodes.contains(n)) {
            return false;
        }
        let pod = e.process().and_then(|p| p.pod.as_ref());
        if self.host_only && (pod.is_some() || e.process().is_none()) {
            return false;
        }
        let ns = pod.and_then(|p| p.namespace.as_deref());
        if !self.namespaces.is_empty() && !ns.is_some_and(|n| self.namespaces.iter().any(|x| x == n)) {
            return false;
        }
        let re =
            |set: &Option<RegexSet>, v: Option<&str>| set.as_ref().is_none_or(|s| v.is_some_and(|v| s.is_match(v)));
        re(&self.namespace_re, ns)
            && re(&self.pod, pod.and_then(|p| p.name.as_deref()))
            && re(&self.process, e.process().and_then(|p| p.binary.as_deref()))
            && (self.policy_names.is_empty()
                || pipeline::stages::key::policy_name(e).is_some_and(|p| self.policy_names.iter().any(|n| n == p)))
    }

    /// The event with `--include-fields`/`--exclude-fields` applied (the field filters never
    /// drop an event; `None` only if that changed).
    fn shape(&mut self, e: Event) -> Option<Event> {
        let Some(f) = &mut self.fields else { return Some(e) };
        let mut out = Out::new("getevents");
        f.process(e, std::time::Instant::now(), &mut out);
        out.take().pop()
    }
}

pub fn main(global: &Global, args: GeteventsArgs) -> ExitCode {
    let mut filters = match Filters::new(&args) {
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
    let tty = |fd| unsafe { libc::isatty(fd) } == 1;
    let colour = match args.color {
        ColorMode::Always => Colour::Ansi,
        ColorMode::Never => Colour::Plain,
        ColorMode::Auto if tty(libc::STDOUT_FILENO) => Colour::Ansi,
        ColorMode::Auto => Colour::Plain,
    };
    // As tetra does: events piped in are read from stdin (`kubectl logs ... | nightjar getevents`).
    let stdin = args.file.as_ref().is_some_and(|f| f.as_os_str() == "-") || (args.file.is_none() && stdin_has_events());
    let (name, input): (String, Box<dyn BufRead>) = match &args.file {
        _ if stdin => ("<stdin>".into(), Box::new(BufReader::new(std::io::stdin().lock()))),
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
    print_stream(&name, input, &mut filters, format, colour, args.timestamps)
}

/// Whether stdin brings events: a pipe or a file (`| nightjar getevents`, `< export.log`).
/// Not a terminal, and not /dev/null or a closed stdin, which is what a service or a CI job
/// has: those stream from the agent.
fn stdin_has_events() -> bool {
    // SAFETY: fstat writes into the zeroed struct it is given and has no other effect.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; fd 0 may be closed, which fstat reports as an error.
    if unsafe { libc::fstat(libc::STDIN_FILENO, &mut st) } != 0 {
        return false;
    }
    matches!(st.st_mode & libc::S_IFMT, libc::S_IFIFO | libc::S_IFREG)
}

fn print_stream(
    name: &str,
    input: Box<dyn BufRead>,
    filters: &mut Filters,
    format: StdoutFormat,
    colour: Colour,
    timestamps: bool,
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
                let Some(ev) = filters.shape(ev) else { continue };
                let mut line = format_event(&ev, format, colour);
                if timestamps && format == StdoutFormat::Compact {
                    if let Some(t) = &ev.time {
                        line = format!("{} {line}", tetra_timestamp(t));
                    }
                }
                if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
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
