//! The control socket's protocol (`super::protocol`, src/control/protocol.rs): any bytes,
//! read through a small buffer as from a socket, split into lines under the cap, each
//! decoding to a request or an error, answered by one line that parses back — never a
//! panic, and never more than the cap held. True when a request decoded.
use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

use super::protocol;

/// Polls a future that never waits (it reads from memory) to its end.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

pub fn one(data: &[u8]) -> bool {
    let max = 4096;
    let mut r = tokio::io::BufReader::with_capacity(16, data);
    let mut line = Vec::new();
    let mut decoded = false;
    while let Ok(true) = ready(protocol::read_line(&mut r, &mut line, max)) {
        assert!(line.len() <= max && !line.contains(&b'\n'));
        let resp = match protocol::decode(&line) {
            Ok(req) => {
                decoded = true;
                protocol::Response::ok(format!("{req:?}"))
            }
            Err(e) => protocol::Response::err(e),
        };
        let out = resp.to_line();
        assert!(out.ends_with('\n') && !out[..out.len() - 1].contains('\n'));
        let back: protocol::Response = serde_json::from_str(&out).expect("a response parses back");
        assert_eq!(back.ok, resp.ok);
    }
    decoded
}
