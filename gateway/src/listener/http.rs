//! Reads an HTTP/1.1 request head far enough to route by Host, without consuming the body.

use skybridge_api::header::TraceContext;

/// Outcome of looking at the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// The head is not complete yet.
    NeedMore,
    /// The Host (from the Host header, or the authority of an absolute-form target), and the
    /// client's W3C trace context when it sent exactly one `traceparent`.
    Done { host: String, trace: Option<TraceContext> },
}

/// Why the request cannot be routed; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    #[error("request head has more than {0} header fields")]
    TooManyHeaders(usize),
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("request has no Host header")]
    NoHost,
}

impl HttpError {
    /// The status line to answer with.
    pub fn status(&self) -> &'static str {
        match self {
            HttpError::TooLarge(_) | HttpError::TooManyHeaders(_) => "431 Request Header Fields Too Large",
            HttpError::Malformed(_) | HttpError::NoHost => "400 Bad Request",
        }
    }
}

/// Header fields read from one request head; more is answered 431 naming this limit.
pub const MAX_HEADERS: usize = 128;

/// Parses the request head at the front of `buf`, bounded by `max` bytes.
pub fn peek(buf: &[u8], max: usize) -> Result<Peek, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let window = &buf[..buf.len().min(max)];
    match req.parse(window) {
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max {
                Err(HttpError::TooLarge(max))
            } else {
                Ok(Peek::NeedMore)
            }
        }
        Ok(httparse::Status::Complete(_)) => {
            let mut host = None;
            let mut parents = Vec::new();
            let mut states = Vec::new();
            for h in req.headers.iter() {
                let value = || std::str::from_utf8(h.value).ok().map(str::trim).filter(|v| !v.is_empty());
                if h.name.eq_ignore_ascii_case("traceparent") {
                    parents.extend(value());
                } else if h.name.eq_ignore_ascii_case("tracestate") {
                    states.extend(value());
                }
                if h.name.eq_ignore_ascii_case("host") {
                    if host.is_some() {
                        // RFC 9112 §3.2: more than one Host is a 400.
                        return Err(HttpError::Malformed("more than one Host header".into()));
                    }
                    let v =
                        std::str::from_utf8(h.value).map_err(|_| HttpError::Malformed("Host is not ASCII".into()))?;
                    host = Some(v.trim().to_owned());
                }
            }
            let from_target = req.path.and_then(authority_of);
            // Trace Context §3.2: several traceparent headers are invalid; tracestate may be split.
            let trace = match parents.as_slice() {
                [p] => Some(TraceContext {
                    traceparent: (*p).to_owned(),
                    tracestate: (!states.is_empty()).then(|| states.join(",")),
                }),
                _ => None,
            };
            match from_target.or(host) {
                Some(h) if !h.is_empty() => Ok(Peek::Done { host: h, trace }),
                _ => Err(HttpError::NoHost),
            }
        }
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::TooManyHeaders(MAX_HEADERS)),
        Err(e) => Err(HttpError::Malformed(e.to_string())),
    }
}

/// The authority of an absolute-form target (`http://host:port/path`), which RFC 9112 §3.2.2
/// says takes precedence over Host.
fn authority_of(target: &str) -> Option<String> {
    let rest = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    let auth = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    (!auth.is_empty()).then(|| auth.to_owned())
}

/// A complete, short HTTP/1.1 response that closes the connection.
pub fn response(status: &str, reason: &str) -> Vec<u8> {
    let body = format!("skybridge: {reason}\n");
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header() {
        let r = b"GET /x HTTP/1.1\r\nHost: api.prod:8080\r\nAccept: */*\r\n\r\nBODY";
        assert_eq!(peek(r, 1024), Ok(Peek::Done { host: "api.prod:8080".into(), trace: None }));
    }

    #[test]
    fn absolute_form_wins() {
        let r = b"GET http://api.prod/x HTTP/1.1\r\nHost: other.prod\r\n\r\n";
        assert_eq!(peek(r, 1024), Ok(Peek::Done { host: "api.prod".into(), trace: None }));
    }

    #[test]
    fn trace_context_headers() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let r =
            format!("GET / HTTP/1.1\r\nHost: a.b\r\nTraceparent: {tp}\r\ntracestate: x=1\r\ntracestate: y=2\r\n\r\n");
        let want = TraceContext { traceparent: tp.into(), tracestate: Some("x=1,y=2".into()) };
        assert_eq!(peek(r.as_bytes(), 1024), Ok(Peek::Done { host: "a.b".into(), trace: Some(want) }));
        // Two traceparents: ignored, as the spec says; the request still routes.
        let r = format!("GET / HTTP/1.1\r\nHost: a.b\r\ntraceparent: {tp}\r\ntraceparent: {tp}\r\n\r\n");
        assert_eq!(peek(r.as_bytes(), 1024), Ok(Peek::Done { host: "a.b".into(), trace: None }));
    }

    #[test]
    fn partial_needs_more_then_too_large() {
        let r = b"GET / HTTP/1.1\r\nHost: a.b\r\n";
        assert_eq!(peek(r, 1024), Ok(Peek::NeedMore));
        let big = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 2000]].concat();
        assert_eq!(peek(&big, 1024), Err(HttpError::TooLarge(1024)));
    }

    #[test]
    fn too_many_headers_names_the_count_limit() {
        let head: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
        let r = format!("GET / HTTP/1.1\r\nHost: a.b\r\n{head}\r\n");
        let e = peek(r.as_bytes(), 16 * 1024).unwrap_err();
        assert_eq!(e, HttpError::TooManyHeaders(128));
        assert_eq!(e.status(), "431 Request Header Fields Too Large");
        assert!(e.to_string().contains("more than 128 header fields"), "{e}");
    }

    #[test]
    fn errors() {
        assert_eq!(peek(b"GET / HTTP/1.1\r\n\r\n", 1024), Err(HttpError::NoHost));
        assert!(matches!(peek(b"\x16\x03\x01garbage\r\n\r\n", 1024), Err(HttpError::Malformed(_))));
        assert!(matches!(
            peek(b"GET / HTTP/1.1\r\nHost: a.b\r\nHost: c.d\r\n\r\n", 1024),
            Err(HttpError::Malformed(_))
        ));
        assert_eq!(peek(b"GET / HTTP/1.1\r\nHost: \r\n\r\n", 1024), Err(HttpError::NoHost));
    }

    #[test]
    fn response_is_well_formed() {
        let r = String::from_utf8(response("502 Bad Gateway", "no route")).unwrap();
        assert!(r.starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
        assert!(r.ends_with("\r\n\r\nskybridge: no route\n"));
    }
}
