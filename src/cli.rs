use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// nightjar — kernel-level runtime security: process, file and network activity from eBPF,
/// filtered by Tetragon TracingPolicies, exported as Tetragon-compatible JSON.
#[derive(Parser, Debug)]
#[command(name = "nightjar", version, propagate_version = true)]
#[command(
    after_help = "Start the agent with `sudo nightjar run`; watch its events with `nightjar getevents -o compact`.\n\
Exit codes: 0 ok, 1 runtime failure, 2 bad config/policy/usage."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Config file (YAML). Without it, the built-in default (config/default.yaml) is used.
    #[arg(short, long, global = true, env = "NIGHTJAR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one config key, e.g. `--set sinks.file.path=/tmp/n.log` (repeatable; applied
    /// after the file and after NIGHTJAR__SECTION__KEY environment variables).
    #[arg(short = 's', long = "set", global = true, value_name = "KEY.PATH=VALUE")]
    pub set: Vec<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, env = "NIGHTJAR_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter (tracing syntax: `info`, `nightjar_sensor=debug`, ...).
    #[arg(long, global = true, env = "NIGHTJAR_LOG")]
    pub log_level: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent: load the eBPF sensor and the policies, export events to the sinks.
    Run(RunArgs),
    /// Print events: from a Tetragon/nightjar JSON export (a file or stdin).
    Getevents(Box<GeteventsArgs>),
    /// Work with TracingPolicy files.
    Policy(PolicyArgs),
    /// Show kernel features nightjar found and which hooks it can use.
    Status(StatusArgs),
    /// Print the effective config (file + environment + --set) as YAML, or check it.
    Config(ConfigArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Stop after this many seconds (for scripts and tests); default: run until SIGTERM/SIGINT.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Compact,
}

/// `--color` of the compact view, as tetra spells it.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    Auto,
    Always,
    Never,
}

/// The flags are tetra's (`tetra getevents`), except `-f`, which is nightjar's file to read
/// (tetra's `-f` is `--include-fields`; use the long name).
#[derive(Args, Debug)]
pub struct GeteventsArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value = "compact")]
    pub output: Output,
    /// Read a JSON export (one event per line: nightjar's or Tetragon's, e.g.
    /// /var/log/tetragon/tetragon.log) from FILE; `-` for stdin. Without it, stdin when it
    /// is not a terminal (`kubectl logs ... | nightjar getevents`), else the running agent.
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Only events of pods in these Kubernetes namespaces (comma-separated or repeated).
    #[arg(short = 'n', long, value_delimiter = ',')]
    pub namespace: Vec<String>,
    /// Only events of pods whose namespace matches one of these regexes.
    #[arg(long, value_delimiter = ',', value_name = "REGEX")]
    pub namespace_regex: Vec<String>,
    /// Only events of pods whose name matches one of these regexes.
    #[arg(long, value_delimiter = ',', value_name = "REGEX")]
    pub pod: Vec<String>,
    /// Only events whose process binary matches one of these regexes.
    #[arg(long, value_delimiter = ',', value_name = "REGEX")]
    pub process: Vec<String>,
    /// Only these event types (comma-separated, as Tetragon spells them: PROCESS_EXEC,
    /// PROCESS_EXIT, PROCESS_KPROBE, PROCESS_TRACEPOINT, PROCESS_LSM, ...).
    #[arg(short = 'e', long, value_delimiter = ',')]
    pub event_types: Vec<String>,
    /// Only process executions and exits (`--event-types PROCESS_EXEC,PROCESS_EXIT`).
    #[arg(long)]
    pub process_only: bool,
    /// Only events of these policies (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub policy_names: Vec<String>,
    /// Only host events: processes that are not in a pod.
    #[arg(long)]
    pub host: bool,
    /// Only events from these nodes (comma-separated node names).
    #[arg(long, value_delimiter = ',')]
    pub node: Vec<String>,
    /// Prefix compact lines with the event's time.
    #[arg(long)]
    pub timestamps: bool,
    /// Colorize compact output.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorMode,
    /// Keep only these fields of each event's payload (comma-separated paths: process,parent.pod).
    #[arg(long, value_delimiter = ',', value_name = "FIELDS")]
    pub include_fields: Vec<String>,
    /// Remove these fields from each event's payload (comma-separated paths).
    #[arg(short = 'F', long, value_delimiter = ',', value_name = "FIELDS")]
    pub exclude_fields: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Check TracingPolicy files on this kernel: prints how each hook would be served, or
    /// `file:line:column: key.path: reason` (exit code 2).
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Load a policy into the running agent (without a restart).
    Add {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Remove a policy from the running agent by its metadata.name.
    Delete {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// List the policies the running agent has loaded and which hooks serve them.
    List,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Only check the config; print nothing when it is valid.
    #[arg(long)]
    pub check: bool,
}
