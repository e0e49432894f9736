//! Metrics end to end: a real Prometheus (Debian's package) scrapes the agent on loopback and
//! is queried for `nightjar_events_total`; promtool accepts the exposition and the alert rules.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::common::*;

fn promtool() -> Command {
    Command::new("promtool")
}

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/prometheus")
}

#[test]
fn promtool_checks_and_tests_the_alert_rules() {
    let dir = config_dir();
    let out = run_ok(promtool().current_dir(&dir).args(["check", "rules", "alerts.yml"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 8 rules found"));
    let out = run_ok(promtool().current_dir(&dir).args(["test", "rules", "alerts_test.yml"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
    run_ok(promtool().current_dir(&dir).args(["check", "config", "prometheus.yml"]));
}

fn write_prometheus_config(dir: &Path, agent_port: u16) -> PathBuf {
    let p = dir.join("prometheus.yml");
    std::fs::write(
        &p,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: nightjar\n    static_configs:\n      - targets: [\"127.0.0.1:{agent_port}\"]\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn prometheus_scrapes_the_agent_and_promtool_accepts_the_exposition() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let _agent = Agent::spawn(
        agent_run(dir.path())
            .args(["--set", &format!("metrics.listen=127.0.0.1:{port}")])
            .args(["--set", &format!("sinks.file.path={}", dir.path().join("events.log").display())])
            .args(["--set", "sinks.stdout.enabled=false"]),
    );
    let up = wait_for(Duration::from_secs(60), || http_get(addr, "/healthz").ok().filter(|(s, _)| *s == 200));
    assert!(up.is_some(), "agent never became healthy");
    // Before any event: every known series is there at 0, so `increase()` alerts see the
    // first Sigkill after a start.
    let (_, first) = http_get(addr, "/metrics").unwrap();
    for series in [
        r#"nightjar_policy_events_total{policy="monitor-sensitive-files",action="KPROBE_ACTION_POST"}"#,
        r#"nightjar_policy_events_total{policy="detect-privilege-escalation",action="KPROBE_ACTION_POST"}"#,
        r#"nightjar_sink_events_total{sink="file",outcome="delivered"}"#,
        r#"nightjar_sink_events_total{sink="file",outcome="dropped"}"#,
        r#"nightjar_events_total{type="process_lsm"}"#,
    ] {
        assert!(first.lines().any(|l| l.starts_with(series)), "{series} missing at start:\n{first}");
    }
    for _ in 0..5 {
        assert!(Command::new("/bin/true").status().unwrap().success());
    }
    // Tetragon's pair, from the kernel's accounting (published every second): the exec
    // program's runs come to cover our execs.
    let exec_runs = |b: &str| {
        b.lines()
            .find(|l| {
                l.starts_with("nightjar_overhead_program_runs_total{")
                    && l.contains("section=\"tracepoint/sched_process_exec\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let mut last = String::new();
    let body = wait_for(Duration::from_secs(20), || {
        let (_, b) = http_get(addr, "/metrics").ok()?;
        last.clone_from(&b);
        (b.contains("nightjar_events_total{") && exec_runs(&b)? >= 5.0).then_some(b)
    })
    .unwrap_or_else(|| panic!("nightjar_events_total or 5 runs of the exec program never exported:\n{last}"));
    assert!(body.contains("# TYPE nightjar_overhead_program_seconds_total counter"), "{body}");

    // promtool reads the exposition on stdin; HELP texts and types must satisfy its linter.
    let mut check = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let cfg = write_prometheus_config(dir.path(), port);
    let prom_port = free_port();
    let prom_addr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    let _prom = Agent::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display())),
    );
    let answer = wait_for(Duration::from_secs(90), || {
        let (status, b) = http_get(prom_addr, "/api/v1/query?query=sum(nightjar_events_total)").ok()?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&b).ok()?;
        let value = v["data"]["result"][0]["value"][1].as_str()?.parse::<f64>().ok()?;
        (value > 0.0).then_some(v)
    });
    let v = answer.expect("Prometheus never returned nightjar_events_total > 0");
    assert_eq!(v["status"], "success");
    // The scrape target is up, as Prometheus itself says.
    let (_, up) = http_get(prom_addr, "/api/v1/query?query=up%7Bjob%3D%22nightjar%22%7D").unwrap();
    let up: serde_json::Value = serde_json::from_str(&up).unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
}
