//! W3C Trace Context `traceparent` values (https://www.w3.org/TR/trace-context/#traceparent-header).

use std::fmt;

/// A parsed `traceparent`: which trace, which span is the parent, and the trace flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub flags: u8,
}

const V00_LEN: usize = 55;

impl TraceParent {
    /// Parses a header value. `None` for anything the spec says to ignore (the receiver then
    /// starts a new trace): bad lengths or hex, upper case, all-zero ids, version `ff`.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let v = value.trim();
        let b = v.as_bytes();
        if b.len() < V00_LEN {
            return None;
        }
        let version = hex(&v[0..2])? as u8;
        // Version 00 is exactly 55 bytes; later versions may append fields after a dash.
        if version == 0xff || (version == 0 && b.len() != V00_LEN) || (b.len() > V00_LEN && b[V00_LEN] != b'-') {
            return None;
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let trace_id = hex(&v[3..35])?;
        let span_id = hex(&v[36..52])? as u64;
        let flags = hex(&v[53..55])? as u8;
        (trace_id != 0 && span_id != 0).then_some(TraceParent { trace_id, span_id, flags })
    }

    /// Whether the caller may have recorded this trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The same trace with `span_id` as the new parent, as a participant passes it on.
    pub fn child(self, span_id: u64) -> TraceParent {
        TraceParent { span_id, ..self }
    }
}

/// Lower-case hex only, as the spec requires.
fn hex(s: &str) -> Option<u128> {
    if !s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example_and_round_trips() {
        let p = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.span_id, 0x00f067aa0ba902b7);
        assert!(p.sampled());
        assert_eq!(p.to_string(), EXAMPLE);
        let c = p.child(0xabc);
        assert_eq!(c.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01");
    }

    #[test]
    fn rejects_what_the_spec_says_to_ignore() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn later_versions_keep_the_known_prefix() {
        let p = TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future").unwrap();
        assert!(!p.sampled());
        assert_eq!(p.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert_eq!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00x"), None);
    }
}
