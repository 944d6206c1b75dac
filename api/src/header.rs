//! The tunnel stream header: the first bytes of every gateway-to-gateway stream.
//!
//! Request (sender → receiver), then payload:
//! ```text
//! u8 version (=1) | u16 BE body length | body = TLV fields: u8 tag | u16 BE length | value
//! ```
//! Response (receiver → sender), before any payload flows back:
//! ```text
//! u8 version (=1) | u8 status | u8 reason length | reason (UTF-8)
//! ```
//! Unknown tags below 0x80 are skipped so that newer senders can add optional fields; unknown
//! tags from 0x80 up are "must understand" and fail the decode. See docs/protocol.md.

use bytes::{BufMut, BytesMut};

use crate::model::{ClusterId, ServiceKey};

/// The only header version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes before the request body: version and body length.
pub const REQUEST_PREFIX_LEN: usize = 3;
/// Bytes before the response reason: version, status, reason length.
pub const RESPONSE_PREFIX_LEN: usize = 3;

const TAG_NAMESPACE: u8 = 1;
const TAG_NAME: u8 = 2;
const TAG_PORT: u8 = 3;
const TAG_SOURCE_CLUSTER: u8 = 4;
const TAG_TRACEPARENT: u8 = 5;
const TAG_TRACESTATE: u8 = 6;
const TAG_CRITICAL: u8 = 0x80;
/// Must-understand: the stream is a health probe, answered at once and never delivered.
const TAG_PROBE: u8 = 0x81;
// A receiver that cannot answer probes must refuse them, never deliver them as a connection.
const _: () = assert!(TAG_PROBE >= TAG_CRITICAL);
/// Must-understand: a reachability proof. The receiver admits it like a connection to the
/// service (authorization included), connects to one of its endpoints, answers with the
/// result and closes both: no byte of payload either way.
const TAG_PROOF: u8 = 0x82;
const _: () = assert!(TAG_PROOF >= TAG_CRITICAL);

/// Why a header could not be decoded. Every variant means the peer is broken or hostile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("unsupported header version {0} (this gateway speaks {VERSION})")]
    Version(u8),
    #[error("header body of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("header truncated")]
    Truncated,
    #[error("header field {tag} appears twice")]
    Duplicate { tag: u8 },
    #[error("header field {tag} has a bad value: {reason}")]
    BadField { tag: u8, reason: String },
    #[error("header is missing required field {0}")]
    Missing(&'static str),
    #[error("header carries unknown must-understand field {0:#04x}")]
    UnknownCritical(u8),
    #[error("unknown status code {0}")]
    UnknownStatus(u8),
}

/// W3C trace context propagated with the stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

/// What the sender asks the receiving gateway to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    pub service: ServiceKey,
    pub port: u16,
    pub source: ClusterId,
    pub trace: Option<TraceContext>,
    /// A health probe: the receiver answers with its status and delivers nothing. The service
    /// is [`OpenRequest::PROBE_SERVICE`] so that the required fields stay required.
    pub probe: bool,
    /// A reachability proof of `service:port`: the receiver connects to an endpoint, answers
    /// with the outcome and delivers nothing.
    pub proof: bool,
}

impl OpenRequest {
    /// The (namespace, name) a probe names; never a real service (namespaces are the
    /// cluster's, and `skybridge-system` is reserved).
    pub const PROBE_SERVICE: (&'static str, &'static str) = ("skybridge-system", "probe");

    /// A probe from `source`.
    pub fn probe(source: ClusterId) -> Self {
        let (ns, name) = Self::PROBE_SERVICE;
        OpenRequest {
            service: ServiceKey::new(ns, name).expect("valid probe service name"),
            port: 0,
            source,
            trace: None,
            probe: true,
            proof: false,
        }
    }

    /// A reachability proof of `service:port` from `source`.
    pub fn proof(source: ClusterId, service: ServiceKey, port: u16) -> Self {
        OpenRequest { service, port, source, trace: None, probe: false, proof: true }
    }

    /// Appends the encoded header to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u8(VERSION);
        out.put_u16(0); // patched below
        put_field(out, TAG_NAMESPACE, self.service.namespace.as_bytes());
        put_field(out, TAG_NAME, self.service.name.as_bytes());
        put_field(out, TAG_PORT, &self.port.to_be_bytes());
        put_field(out, TAG_SOURCE_CLUSTER, self.source.as_str().as_bytes());
        if self.probe {
            put_field(out, TAG_PROBE, &[]);
        }
        if self.proof {
            put_field(out, TAG_PROOF, &[]);
        }
        if let Some(t) = &self.trace {
            put_field(out, TAG_TRACEPARENT, t.traceparent.as_bytes());
            if let Some(s) = &t.tracestate {
                put_field(out, TAG_TRACESTATE, s.as_bytes());
            }
        }
        let body = out.len() - start - REQUEST_PREFIX_LEN;
        // Field values are bounded by the model (labels ≤ 63 bytes) and trace context sizes.
        let body = u16::try_from(body).expect("stream header body fits in u16");
        out[start + 1..start + 3].copy_from_slice(&body.to_be_bytes());
    }

    /// Reads the prefix and returns the body length that follows, enforcing `max_body`.
    pub fn body_len(prefix: [u8; REQUEST_PREFIX_LEN], max_body: usize) -> Result<usize, HeaderError> {
        if prefix[0] != VERSION {
            return Err(HeaderError::Version(prefix[0]));
        }
        let len = usize::from(u16::from_be_bytes([prefix[1], prefix[2]]));
        if len > max_body {
            return Err(HeaderError::TooLarge { len, max: max_body });
        }
        Ok(len)
    }

    /// Decodes a body whose length came from [`OpenRequest::body_len`].
    pub fn decode_body(mut body: &[u8]) -> Result<Self, HeaderError> {
        let mut namespace = None;
        let mut name = None;
        let mut port = None;
        let mut source = None;
        let mut traceparent = None;
        let mut tracestate = None;
        let mut probe = None;
        let mut proof = None;
        while !body.is_empty() {
            if body.len() < 3 {
                return Err(HeaderError::Truncated);
            }
            let tag = body[0];
            let len = usize::from(u16::from_be_bytes([body[1], body[2]]));
            let value = body.get(3..3 + len).ok_or(HeaderError::Truncated)?;
            body = &body[3 + len..];
            let slot = match tag {
                TAG_NAMESPACE => &mut namespace,
                TAG_NAME => &mut name,
                TAG_PORT => &mut port,
                TAG_SOURCE_CLUSTER => &mut source,
                TAG_TRACEPARENT => &mut traceparent,
                TAG_TRACESTATE => &mut tracestate,
                TAG_PROBE => &mut probe,
                TAG_PROOF => &mut proof,
                t if t >= TAG_CRITICAL => return Err(HeaderError::UnknownCritical(t)),
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(HeaderError::Duplicate { tag });
            }
        }
        let text = |tag: u8, v: &[u8]| -> Result<String, HeaderError> {
            std::str::from_utf8(v)
                .map(str::to_owned)
                .map_err(|_| HeaderError::BadField { tag, reason: "not UTF-8".into() })
        };
        let namespace = text(TAG_NAMESPACE, namespace.ok_or(HeaderError::Missing("namespace"))?)?;
        let name = text(TAG_NAME, name.ok_or(HeaderError::Missing("name"))?)?;
        let service = ServiceKey::new(&namespace, &name)
            .map_err(|e| HeaderError::BadField { tag: TAG_NAME, reason: e.to_string() })?;
        let port = match port.ok_or(HeaderError::Missing("port"))? {
            [a, b] => u16::from_be_bytes([*a, *b]),
            _ => return Err(HeaderError::BadField { tag: TAG_PORT, reason: "not 2 bytes".into() }),
        };
        let source = text(TAG_SOURCE_CLUSTER, source.ok_or(HeaderError::Missing("source cluster"))?)?;
        let source = ClusterId::new(&source)
            .map_err(|e| HeaderError::BadField { tag: TAG_SOURCE_CLUSTER, reason: e.to_string() })?;
        let trace = match traceparent {
            Some(tp) => Some(TraceContext {
                traceparent: text(TAG_TRACEPARENT, tp)?,
                tracestate: tracestate.map(|s| text(TAG_TRACESTATE, s)).transpose()?,
            }),
            None => None,
        };
        Ok(OpenRequest { service, port, source, trace, probe: probe.is_some(), proof: proof.is_some() })
    }

    /// Decodes a whole header from the front of `buf`: `Ok(None)` when more bytes are needed,
    /// else the request and how many bytes it took.
    pub fn decode(buf: &[u8], max_body: usize) -> Result<Option<(Self, usize)>, HeaderError> {
        let Some(prefix) = buf.get(..REQUEST_PREFIX_LEN) else { return Ok(None) };
        let len = Self::body_len([prefix[0], prefix[1], prefix[2]], max_body)?;
        let Some(body) = buf.get(REQUEST_PREFIX_LEN..REQUEST_PREFIX_LEN + len) else {
            return Ok(None);
        };
        Ok(Some((Self::decode_body(body)?, REQUEST_PREFIX_LEN + len)))
    }
}

fn put_field(out: &mut BytesMut, tag: u8, value: &[u8]) {
    out.put_u8(tag);
    out.put_u16(u16::try_from(value.len()).expect("header field fits in u16"));
    out.put_slice(value);
}

/// The receiving gateway's answer to an [`OpenRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Connected to a local endpoint; payload follows.
    Ok = 0,
    /// The service (or port) is not hosted in the receiver's cluster.
    NoRoute = 1,
    /// The source cluster is not allowed to reach the service.
    Denied = 2,
    /// Every local endpoint refused or timed out.
    UpstreamUnreachable = 3,
    /// The receiver is at a limit or draining.
    Overloaded = 4,
}

impl Status {
    /// Every status, for metrics label sets.
    pub const ALL: [Status; 5] =
        [Status::Ok, Status::NoRoute, Status::Denied, Status::UpstreamUnreachable, Status::Overloaded];

    /// The snake_case name used in logs, metrics and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NoRoute => "no_route",
            Status::Denied => "denied",
            Status::UpstreamUnreachable => "upstream_unreachable",
            Status::Overloaded => "overloaded",
        }
    }

    fn from_code(code: u8) -> Result<Self, HeaderError> {
        Status::ALL.get(usize::from(code)).copied().ok_or(HeaderError::UnknownStatus(code))
    }
}

/// A status with a short human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenResponse {
    pub status: Status,
    pub reason: String,
}

impl OpenResponse {
    /// Appends the encoded response; the reason is cut to 255 bytes at a char boundary.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut end = self.reason.len().min(255);
        while !self.reason.is_char_boundary(end) {
            end -= 1;
        }
        out.put_u8(VERSION);
        out.put_u8(self.status as u8);
        out.put_u8(end as u8);
        out.put_slice(&self.reason.as_bytes()[..end]);
    }

    /// Reads the prefix; returns the status and the reason length that follows.
    pub fn decode_prefix(prefix: [u8; RESPONSE_PREFIX_LEN]) -> Result<(Status, usize), HeaderError> {
        if prefix[0] != VERSION {
            return Err(HeaderError::Version(prefix[0]));
        }
        Ok((Status::from_code(prefix[1])?, usize::from(prefix[2])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> OpenRequest {
        OpenRequest {
            service: ServiceKey::new("prod", "payments").unwrap(),
            port: 8443,
            source: ClusterId::new("aws-1").unwrap(),
            trace: Some(TraceContext {
                traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                tracestate: Some("x=y".into()),
            }),
            probe: false,
            proof: false,
        }
    }

    #[test]
    fn a_proof_round_trips() {
        let p = OpenRequest::proof(ClusterId::new("gcp-1").unwrap(), "prod/web".parse().unwrap(), 80);
        let got = OpenRequest::decode(&encoded(&p), 4096).unwrap().unwrap().0;
        assert!(got.proof && !got.probe);
        assert_eq!(got, p);
    }

    #[test]
    fn probe_round_trips_and_is_must_understand() {
        let p = OpenRequest::probe(ClusterId::new("gcp-1").unwrap());
        let bytes = encoded(&p);
        let (got, _) = OpenRequest::decode(&bytes, 4096).unwrap().unwrap();
        assert_eq!(got, p);
        assert!(got.probe);
        assert!(!OpenRequest::decode(&encoded(&req()), 4096).unwrap().unwrap().0.probe);
    }

    fn encoded(r: &OpenRequest) -> Vec<u8> {
        let mut b = BytesMut::new();
        r.encode(&mut b);
        b.to_vec()
    }

    #[test]
    fn round_trip_with_payload_after() {
        let mut bytes = encoded(&req());
        let n = bytes.len();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (got, used) = OpenRequest::decode(&bytes, 4096).unwrap().unwrap();
        assert_eq!(got, req());
        assert_eq!(used, n);
    }

    #[test]
    fn incomplete_needs_more() {
        let bytes = encoded(&req());
        for cut in 0..bytes.len() {
            assert_eq!(OpenRequest::decode(&bytes[..cut], 4096), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn limits_and_versions() {
        let bytes = encoded(&req());
        assert!(matches!(OpenRequest::decode(&bytes, 10), Err(HeaderError::TooLarge { .. })));
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(OpenRequest::decode(&v2, 4096), Err(HeaderError::Version(2)));
    }

    fn with_body(body: &[u8]) -> Vec<u8> {
        let mut v = vec![VERSION];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn field(tag: u8, v: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v);
        out
    }

    fn minimal() -> Vec<u8> {
        [
            field(TAG_NAMESPACE, b"prod"),
            field(TAG_NAME, b"db"),
            field(TAG_PORT, &5432u16.to_be_bytes()),
            field(TAG_SOURCE_CLUSTER, b"gcp-1"),
        ]
        .concat()
    }

    #[test]
    fn unknown_optional_fields_are_skipped_critical_rejected() {
        let mut body = minimal();
        body.extend(field(0x10, b"future"));
        let (r, _) = OpenRequest::decode(&with_body(&body), 4096).unwrap().unwrap();
        assert_eq!(r.port, 5432);
        assert_eq!(r.trace, None);
        let mut body = minimal();
        body.extend(field(0x83, b"x"));
        assert_eq!(OpenRequest::decode(&with_body(&body), 4096), Err(HeaderError::UnknownCritical(0x83)));
    }

    #[test]
    fn garbage_is_rejected() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (field(TAG_NAMESPACE, b"prod"), "missing"),
            ([minimal(), field(TAG_NAME, b"x")].concat(), "duplicate"),
            ([minimal()[..minimal().len() - 2].to_vec()].concat(), "truncated"),
            (vec![1, 0], "truncated tlv head"),
            (
                [
                    field(TAG_NAMESPACE, b"prod"),
                    field(TAG_NAME, b"db"),
                    field(TAG_PORT, b"\x01"),
                    field(TAG_SOURCE_CLUSTER, b"a"),
                ]
                .concat(),
                "short port",
            ),
            (
                [
                    field(TAG_NAMESPACE, b"PROD"),
                    field(TAG_NAME, b"db"),
                    field(TAG_PORT, b"\x01\x02"),
                    field(TAG_SOURCE_CLUSTER, b"a"),
                ]
                .concat(),
                "bad label",
            ),
            (
                [
                    field(TAG_NAMESPACE, b"prod"),
                    field(TAG_NAME, b"db"),
                    field(TAG_PORT, b"\x01\x02"),
                    field(TAG_SOURCE_CLUSTER, b"\xff"),
                ]
                .concat(),
                "bad utf8",
            ),
        ];
        for (body, what) in cases {
            assert!(OpenRequest::decode(&with_body(&body), 4096).is_err(), "{what} accepted");
        }
    }

    #[test]
    fn response_round_trip_and_unknown_status() {
        let r = OpenResponse { status: Status::Denied, reason: "no".into() };
        let mut b = BytesMut::new();
        r.encode(&mut b);
        let (s, n) = OpenResponse::decode_prefix([b[0], b[1], b[2]]).unwrap();
        assert_eq!((s, n), (Status::Denied, 2));
        assert_eq!(&b[3..], b"no");
        assert_eq!(OpenResponse::decode_prefix([1, 9, 0]), Err(HeaderError::UnknownStatus(9)));
        let long = OpenResponse { status: Status::Ok, reason: "é".repeat(200) };
        let mut b = BytesMut::new();
        long.encode(&mut b);
        assert!(std::str::from_utf8(&b[3..]).is_ok());
        assert_eq!(usize::from(b[2]), b.len() - 3);
    }
}
