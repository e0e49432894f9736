//! End-to-end tests of the `nightjar` binary: real config files, real kernel, real sockets.
mod common;

mod compose;
mod config_errors;
mod delivery;
mod delivery_faults;
mod faults_blocked;
mod faults_control;
mod faults_input;
mod faults_metrics;
mod faults_util;
mod getevents;
mod k8s_scope;
mod kubernetes;
mod kubernetes_pod;
mod main_job;
mod parquet_sigkill;
mod policies;
mod prometheus;
mod remote_sinks;
mod run_smoke;
mod shutdown;
mod sink_config_checks;
mod strict_json;
mod tail_faults;
mod tetra_api;
mod tetragon_tail;
