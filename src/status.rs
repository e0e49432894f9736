//! `nightjar status`: the running agent's view (kernel features, hooks and how each policy
//! is served, counters), or, when no agent runs, what this kernel offers and exit code 1.
use std::process::ExitCode;

use serde_json::Value;

use crate::{
    cli::{Global, StatusArgs},
    control::{self, Request},
};

pub fn main(global: &Global, args: StatusArgs) -> ExitCode {
    let socket = crate::config::load(global).map(|c| c.control.socket).ok();
    let agent = socket.as_ref().map(|s| control::call(s, &Request::Status));
    match agent {
        Some(Ok(r)) if r.ok => {
            if args.json {
                println!("{}", r.result);
            } else {
                print_agent(&r.result);
            }
            ExitCode::SUCCESS
        }
        other => {
            let why = match other {
                Some(Ok(r)) => r.error.unwrap_or_default(),
                Some(Err(e)) => e,
                None => "invalid config".into(),
            };
            local(args.json, &why)
        }
    }
}

fn print_agent(v: &Value) {
    let k = &v["kernel"];
    let yn = |b: &Value| if b.as_bool().unwrap_or(false) { "yes" } else { "no" };
    println!("agent:         running (node {})", v["pipeline"]["node_name"].as_str().unwrap_or("?"));
    println!("health:        {}", v["pipeline"]["health"].as_str().unwrap_or("?"));
    if let Some(e) = v["sensor_error"].as_str() {
        println!("sensor:        {e}");
    }
    println!("kernel:        {}", k["kernel_release"].as_str().unwrap_or("?"));
    println!("btf:           {}", yn(&k["btf"]));
    println!("kprobes:       {}", yn(&k["kprobes"]));
    println!("fentry:        {}", yn(&k["fentry"]));
    println!("bpf lsm:       {}", yn(&k["bpf_lsm"]));
    println!("base hooks:");
    for h in v["base_hooks"].as_array().into_iter().flatten() {
        println!("  {}", h.as_str().unwrap_or("?"));
    }
    println!("policies:");
    for p in v["policies"].as_array().into_iter().flatten() {
        println!("  {} ({})", p["name"].as_str().unwrap_or("?"), p["source"].as_str().unwrap_or("?"));
        if let Some(scope) = p["scope"].as_str() {
            println!("    scope: {scope}");
        }
        for h in p["hooks"].as_array().into_iter().flatten() {
            println!(
                "    {} served by {} (backend: {})",
                h["function"].as_str().unwrap_or("?"),
                h["served_by"].as_str().unwrap_or("?"),
                h["backend"].as_str().unwrap_or("?")
            );
        }
    }
    let pl = &v["pipeline"];
    println!("events:        {} total, {}/s", pl["events_total"], pl["events_per_second"]);
    println!("sinks:");
    for (name, st) in v["pipeline"]["sinks"].as_object().into_iter().flatten() {
        let b = &st["buffer"];
        let buffer = match b["type"].as_str() {
            Some(t) => format!(
                " ({t} buffer: {} events, {} bytes, oldest {:.0}s; delivered {})",
                b["events"],
                b["bytes"],
                b["oldest_event_age_secs"].as_f64().unwrap_or(0.0),
                st["delivered"]
            ),
            None => String::new(),
        };
        println!("  {name}: {}{buffer}", st["state"].as_str().unwrap_or("?"));
    }
    println!("records read:  {}", v["records"]);
    println!("missed events: {}", v["missed"]);
    println!("process cache: {}", v["process_cache"]);
    print_programs(v);
}

/// Each loaded program's cost from the kernel's accounting (BPF stats).
fn print_programs(v: &Value) {
    if let Some(why) = v["program_stats_off"].as_str() {
        println!("program cost:  not counted ({why})");
        return;
    }
    println!("program cost (kernel BPF stats: runs, ns per run, seconds):");
    for p in v["programs"].as_array().into_iter().flatten() {
        let runs = p["runs"].as_u64().unwrap_or(0);
        let ns = p["run_time_ns"].as_u64().unwrap_or(0);
        println!(
            "  {:<36} {:>12} {:>8} {:>10.3}  {}",
            p["section"].as_str().unwrap_or("?"),
            runs,
            ns.checked_div(runs).unwrap_or(0),
            ns as f64 / 1e9,
            p["attach"].as_str().unwrap_or("?")
        );
    }
}

fn local(json: bool, why: &str) -> ExitCode {
    let f = match sensor::probe::probe(false) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("nightjar status: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!("{}", serde_json::json!({ "agent": null, "agent_error": why, "kernel": f }));
        return ExitCode::FAILURE;
    }
    let yn = |b: bool| if b { "yes" } else { "no" };
    println!("agent:         not reachable ({why})");
    println!("kernel:        {}", f.kernel_release);
    println!("btf:           {}", yn(f.btf));
    println!(
        "tracefs:       {}",
        f.tracefs.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "not mounted".into())
    );
    println!("kprobes:       {}", yn(f.kprobes));
    println!("fentry:        known once the agent runs (it loads one at start)");
    println!(
        "bpf lsm:       {}{}",
        yn(f.bpf_lsm),
        if f.bpf_lsm { " (listed; the agent checks a program loads)" } else { "" }
    );
    println!("running as:    euid {}", f.euid);
    // What this kernel offers is useful, but the question was about the agent.
    ExitCode::FAILURE
}
