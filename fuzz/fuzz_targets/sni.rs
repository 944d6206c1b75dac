//! `listener::sni::peek`: must not panic, and
//! - a host name it returns is non-empty, lowercase, printable ASCII;
//! - it decides from the bytes it has read so far, left to right, so a prefix of the input gives
//!   `NeedMore` or the same answer as the whole input, and once it has decided (`Done` or an
//!   error) more bytes after the input do not change the answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skybridge_api::model::ServiceKey;
use skybridge_gateway::listener::sni::{Peek, peek};

const MAX: usize = 16384;

fuzz_target!(|data: &[u8]| {
    let full = peek(data, MAX);

    if let Ok(Peek::Done(Some(name))) = &full {
        assert!(!name.is_empty(), "empty SNI");
        assert!(
            name.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()),
            "SNI not lowercase printable ASCII: {name:?}"
        );
        // What the listener does next with the name.
        let _ = ServiceKey::from_host(name);
    }

    // The parser owns the byte limit: the listener's buffer never grows past MAX.
    if data.len() >= MAX {
        assert_ne!(full, Ok(Peek::NeedMore), "NeedMore with {} bytes >= max {MAX}", data.len());
    }

    for cut in cut_points(data) {
        let p = peek(&data[..cut], MAX);
        assert!(p == Ok(Peek::NeedMore) || p == full, "prefix {cut}/{}: {p:?}, whole input: {full:?}", data.len());
    }

    if full != Ok(Peek::NeedMore) {
        let mut longer = data.to_vec();
        // Another handshake record, then junk.
        longer.extend_from_slice(&[22, 3, 3, 0, 4, 1, 0, 0, 0, 0xff, 0x00]);
        assert_eq!(peek(&longer, MAX), full, "extra bytes changed a decided answer");
    }
});

/// A bounded set of cut points (checking every prefix would make large inputs quadratic).
fn cut_points(data: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let n = data.len();
    let even = (0..16).map(move |i| n * i / 16);
    let edges = [n.saturating_sub(1), n.min(5), n.min(9)];
    let chosen = data.get(..2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])) % n.max(1));
    even.chain(edges).chain(chosen).filter(move |&c| c < n)
}
