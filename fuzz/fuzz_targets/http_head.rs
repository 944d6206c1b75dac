//! `listener::http::peek`: must not panic, with the listener's limit (16384) and with a small
//! limit taken from the first byte (256 + byte * 64) so the `TooLarge` paths are reached, and
//! - a host it returns is non-empty and has no CR/LF;
//! - with more bytes than `max` it never asks for more (the listener relies on that);
//! - a prefix of the input gives `NeedMore` or the same answer as the whole input, and once it
//!   has decided, more bytes after the input do not change the answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skybridge_api::model::ServiceKey;
use skybridge_gateway::listener::http::{Peek, peek};

fuzz_target!(|data: &[u8]| {
    check(data, 16384);
    if let Some(&b) = data.first() {
        check(data, 256 + usize::from(b) * 64);
    }
});

fn check(data: &[u8], max: usize) {
    let full = peek(data, max);

    if let Ok(Peek::Done { host, trace }) = &full {
        assert!(!host.is_empty(), "empty host");
        if let Some(t) = trace {
            // What the gateway does next with a client's trace context.
            assert!(!t.traceparent.contains(['\r', '\n']), "traceparent with CR/LF");
            let _ = skybridge_gateway::telemetry::TraceParent::parse(&t.traceparent);
        }
        assert!(!host.contains(['\r', '\n']), "host with CR/LF: {host:?}");
        // What the listener does next with the host.
        let _ = ServiceKey::from_host(host);
    }
    if data.len() >= max {
        assert_ne!(full, Ok(Peek::NeedMore), "NeedMore with {} bytes >= max {max}", data.len());
    }

    let n = data.len();
    for cut in (0..8).map(|i| n * i / 8).chain([n.saturating_sub(1), n.saturating_sub(2)]).filter(|&c| c < n) {
        let p = peek(&data[..cut], max);
        assert!(p == Ok(Peek::NeedMore) || p == full, "max {max}, prefix {cut}/{n}: {p:?}, whole input: {full:?}");
    }

    if full != Ok(Peek::NeedMore) {
        let mut longer = data.to_vec();
        longer.extend_from_slice(b"Host: extra.prod\r\n\r\nBODY");
        assert_eq!(peek(&longer, max), full, "max {max}: extra bytes changed a decided answer");
    }
}
