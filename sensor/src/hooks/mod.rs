//! User side of each hook: turns that hook's kernel records into events. Mirrors
//! `sensor-bpf/src/<hook>.rs`.
pub mod charbuf;
pub mod enforcer;
pub mod kstruct;
pub mod net;
pub mod policy;
pub mod process;
pub mod resolve;
pub mod scope;
pub mod stack;
pub mod usdt;
