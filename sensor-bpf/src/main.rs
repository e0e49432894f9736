//! Owns: the kernel side of nightjar — tracepoint programs that observe process
//! lifecycle and write `nightjar_common` records into the `EVENTS` ring buffer.
//! Must not know about: user-space decoding, policies' YAML, the pipeline or sinks.
#![no_std]
#![no_main]

mod charbuf;
mod enforcer;
mod fdfollow;
mod kfunc;
mod kprobe;
mod kread;
mod kstruct;
mod maps;
mod net;
mod policy;
mod process;
mod rawtp;
mod resolve;
mod scope;
mod stack;
mod task;
mod uprobe;
mod usdt;
mod vfs;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path; this only satisfies the linker.
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
