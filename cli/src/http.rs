//! A minimal HTTP/1.1 client for JSON APIs (the federator's, over HTTP or HTTPS, a gateway's
//! admin port, and in tests chromedriver's): one request over a tokio `TcpStream` (wrapped in
//! rustls for HTTPS) does not justify an HTTP client dependency.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a GET got no readable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    // The I/O error is the source, not part of the message: callers print the whole chain.
    #[error("connecting to {addr}")]
    Connect { addr: String, source: std::io::Error },
    #[error("talking to {addr}")]
    Io { addr: String, source: std::io::Error },
    #[error("{addr} did not answer within {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("unreadable answer: {0}")]
    Malformed(String),
    #[error("TLS with {addr} failed (does --cacert hold the CA that issued the server's certificate?)")]
    Tls { addr: String, source: std::io::Error },
}

/// Why an HTTPS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("reading {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("no trusted roots: the system has none readable; give --cacert FILE")]
    NoRoots,
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("building the TLS client: {0}")]
    Config(String),
}

/// How to speak HTTPS to one server: whom to trust, what to present, and the name to verify.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Verifies the server as `host` (a DNS name or an IP address) against the roots in
    /// `cacert` (PEM), or the system's when `None`; presents `identity` (certificate chain and
    /// key files) when given.
    pub fn new(host: &str, cacert: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<Self, TlsSetupError> {
        let file = |p: &Path, e: &dyn std::fmt::Display| TlsSetupError::File {
            path: p.display().to_string(),
            reason: e.to_string(),
        };
        let mut roots = rustls::RootCertStore::empty();
        match cacert {
            Some(path) => {
                for c in certs(path)? {
                    roots.add(c).map_err(|e| file(path, &e))?;
                }
            }
            None => {
                // Unreadable system certificates are skipped; none at all is an error below.
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        if roots.is_empty() {
            return Err(TlsSetupError::NoRoots);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Config(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file(key, &e))?;
                builder.with_client_auth_cert(certs(cert)?, key).map_err(|e| TlsSetupError::Config(e.to_string()))?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let server_name =
            ServerName::try_from(name.to_owned()).map_err(|_| TlsSetupError::ServerName(host.to_owned()))?;
        Ok(TlsClient { config: Arc::new(config), server_name })
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsSetupError::File { path: path.display().to_string(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate { path: path.display().to_string() });
    }
    Ok(certs)
}

/// One request: method, `Host`, path, extra headers and body, over HTTPS when `tls` is set.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub tls: Option<&'a TlsClient>,
}

/// `GET path` on `addr` (`host:port`) with `Host: host`, reading at most `max` bytes, all within
/// `within`: the status and the body.
pub async fn get(addr: &str, host: &str, path: &str, within: Duration, max: u64) -> Result<(u16, Vec<u8>), HttpError> {
    let accept = [("Accept", "application/json")];
    request(addr, Request { method: "GET", host, path, headers: &accept, body: &[], tls: None }, within, max).await
}

/// Sends `req` to `addr` with `Connection: close` and reads the answer, at most `max` bytes,
/// all within `within`. The answer ends at its Content-Length or last chunk even when the
/// server keeps the connection open (chromedriver does), else at the end of the connection.
pub async fn request(addr: &str, req: Request<'_>, within: Duration, max: u64) -> Result<(u16, Vec<u8>), HttpError> {
    let exchange = async {
        let s =
            TcpStream::connect(addr).await.map_err(|source| HttpError::Connect { addr: addr.to_owned(), source })?;
        match req.tls {
            None => exchange(s, addr, req, max).await,
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let s = connector
                    .connect(tls.server_name.clone(), s)
                    .await
                    .map_err(|source| HttpError::Tls { addr: addr.to_owned(), source })?;
                exchange(s, addr, req, max).await
            }
        }
    };
    // Boxed: with a TLS session and its buffers the exchange is tens of kilobytes, too much for
    // the caller's stack (a test thread's, in debug builds).
    let raw = tokio::time::timeout(within, Box::pin(exchange))
        .await
        .map_err(|_| HttpError::Timeout { addr: addr.to_owned(), after: within })??;
    parse_response(&raw)
}

/// Writes the request on `s` and reads the raw answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    addr: &str,
    req: Request<'_>,
    max: u64,
) -> Result<Vec<u8>, HttpError> {
    let io = |source| HttpError::Io { addr: addr.to_owned(), source };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: skybridge/{}\r\nConnection: close\r\n",
        req.method,
        req.path,
        req.host,
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !req.body.is_empty() || !matches!(req.method, "GET" | "HEAD") {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.map_err(io)?;
    s.write_all(req.body).await.map_err(io)?;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while (raw.len() as u64) < max && !complete(&raw) {
        let n = match s.read(&mut buf).await {
            Ok(n) => n,
            // A TLS server that closes without close_notify after a complete answer: the
            // answer's own framing says whether anything is missing.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => 0,
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    raw.truncate(max as usize);
    Ok(raw)
}

/// Whether `raw` holds a whole response whose end is marked (by length or last chunk).
fn complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return dechunk(body).is_ok();
    }
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| body.len() >= n)
}

/// Splits an HTTP/1.1 response into its status and body (Content-Length, chunked, or up to
/// the end of the connection).
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), HttpError> {
    let malformed = |what: &str| HttpError::Malformed(what.to_owned());
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| malformed("no end of the headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| malformed("headers are not UTF-8"))?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| malformed("no HTTP status line"))?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        return Ok((status, dechunk(body)?));
    }
    let body = match header("content-length").map(|n| n.parse::<usize>()) {
        Some(Ok(n)) if n <= body.len() => &body[..n],
        Some(_) => return Err(malformed("body shorter than its Content-Length")),
        None => body,
    };
    Ok((status, body.to_vec()))
}

/// Decodes a chunked body (no trailers expected).
fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, HttpError> {
    let bad = || HttpError::Malformed("bad chunked encoding".into());
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = std::str::from_utf8(&b[..eol]).map_err(|_| bad())?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| bad())?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err(bad());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completeness_by_length_or_last_chunk() {
        assert!(!complete(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n{}"));
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n"));
        assert!(complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"));
        assert!(!complete(b"HTTP/1.0 200 OK\r\n\r\nuntil close"));
    }

    #[test]
    fn responses_with_length_chunks_or_close() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}xx";
        assert_eq!(parse_response(r).unwrap(), (200, b"{}".to_vec()));
        let r = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), (400, b"abcde".to_vec()));
        assert_eq!(parse_response(b"HTTP/1.0 502 Bad Gateway\r\n\r\noops").unwrap(), (502, b"oops".to_vec()));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
        assert!(parse_response(b"garbage").is_err());
    }
}
