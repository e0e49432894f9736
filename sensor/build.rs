//! Builds the eBPF object from `../sensor-bpf` with the nightly toolchain for
//! `bpfel-unknown-none` and places it in OUT_DIR, where `src/loader.rs` embeds it.
//! The nested build uses its own target dir (`<target>/bpf`) shared by every profile,
//! so `cargo check`, `clippy`, `test` and `build --release` compile it once.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let bpf_dir = manifest.join("../sensor-bpf");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for p in ["src", "common/src", "Cargo.toml", "common/Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", bpf_dir.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=NIGHTJAR_NIGHTLY");

    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d).join("bpf"),
        None => manifest.join("../target/bpf"),
    };
    let toolchain = env::var("NIGHTJAR_NIGHTLY").unwrap_or_else(|_| "nightly".into());
    let linker_hint = "run `scripts/setup-ebpf.sh` once (installs rust-src for nightly and bpf-linker)";
    if which("bpf-linker").is_none() {
        panic!("bpf-linker not found on PATH: {linker_hint}");
    }

    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{toolchain}"))
        .args(["build", "--release", "-Z", "build-std=core", "--target", "bpfel-unknown-none", "--ignore-rust-version"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&bpf_dir);
    // The outer build's settings must not leak into the nested nightly build.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "RUSTDOC",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    for (k, _) in env::vars_os() {
        if let Some(k) = k.to_str() {
            if k.starts_with("CARGO_PROFILE_") || k.starts_with("CARGO_CFG_") || k.starts_with("CARGO_FEATURE_") {
                cmd.env_remove(k);
            }
        }
    }
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        ["--cfg", "bpf_target_arch=\"x86_64\"", "-C", "debuginfo=2", "-C", "link-arg=--btf"].join("\x1f"),
    );
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run `cargo +{toolchain}` for the eBPF build: {e}; {linker_hint}"));
    if !status.success() {
        panic!("the eBPF build of {} failed ({status}); if the toolchain is missing, {linker_hint}", bpf_dir.display());
    }
    syscall_table(&out_dir);
    let obj = target_dir.join("bpfel-unknown-none/release/nightjar");
    let dst = out_dir.join("nightjar.bpf.o");
    std::fs::copy(&obj, &dst).unwrap_or_else(|e| panic!("copy {} -> {}: {e}", obj.display(), dst.display()));
}

/// Writes OUT_DIR/syscalls.rs: (name, number) of every x86_64 syscall, from the kernel's
/// UAPI header, so policies can name any syscall and the engine can key its hooks by number.
fn syscall_table(out_dir: &Path) {
    let candidates = ["/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h"];
    let text = candidates.iter().find_map(|p| {
        println!("cargo:rerun-if-changed={p}");
        std::fs::read_to_string(p).ok()
    });
    let text = text.unwrap_or_else(|| {
        panic!("no unistd_64.h in {candidates:?}: install the Debian package linux-libc-dev (scripts/setup.sh does)")
    });
    let mut rows = String::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if it.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(nr)) = (it.next(), it.next()) else { continue };
        let (Some(name), Ok(nr)) = (name.strip_prefix("__NR_"), nr.parse::<u32>()) else { continue };
        rows.push_str(&format!("    ({name:?}, {nr}),\n"));
    }
    let code = format!(
        "/// x86_64 syscalls (generated from unistd_64.h).\npub static SYSCALLS: &[(&str, u32)] = &[\n{rows}];\n"
    );
    std::fs::write(out_dir.join("syscalls.rs"), code).expect("write syscalls.rs");
}

fn which(bin: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|d| d.join(bin)).find(|p| is_exec(p))
}

fn is_exec(p: &Path) -> bool {
    p.is_file()
}
