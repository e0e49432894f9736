//! docker-compose.yml is valid (checked with Debian's docker-compose, no engine needed), and
//! every file it mounts from the repository exists.
use std::{path::PathBuf, process::Command};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose_config(file: &std::path::Path) -> std::process::Output {
    Command::new("docker-compose")
        .arg("-f")
        .arg(file)
        .args(["config", "-q"])
        .current_dir(root())
        .output()
        .expect("docker-compose (installed by scripts/setup.sh)")
}

#[test]
fn compose_file_is_valid_and_its_mounts_exist() {
    let out = compose_config(&root().join("docker-compose.yml"));
    assert!(out.status.success(), "docker-compose config: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let mut mounts = 0;
    for l in text.lines() {
        let l = l.trim().trim_start_matches("- ");
        if let Some(rest) = l.strip_prefix("./") {
            let path = rest.split(':').next().unwrap();
            assert!(root().join(path).exists(), "docker-compose.yml mounts ./{path}, which does not exist");
            mounts += 1;
        }
    }
    assert!(mounts >= 6, "expected the config, policies, prometheus and grafana mounts, found {mounts}");
    for svc in ["nightjar:", "kafka:", "elasticsearch:", "kibana:", "prometheus:", "grafana:"] {
        assert!(text.contains(&format!("\n  {svc}")), "service {svc} missing");
    }
    // The config the nightjar service runs with is a valid nightjar config (its policies
    // directory is where the compose file mounts ./config/policies).
    let out = crate::common::nightjar()
        .args(["config", "--check", "--config"])
        .arg(root().join("config/docker/nightjar.yaml"))
        .args(["--set", &format!("sensor.policies_dir={}", root().join("config/policies").display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_validator_rejects_a_broken_compose_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("docker-compose.yml");
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    std::fs::write(&bad, text.replace("    privileged: true", "    privileged: [true")).unwrap();
    assert!(!compose_config(&bad).status.success());
}
