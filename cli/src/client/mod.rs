//! The client commands (`status`, `clusters`, `services`, `routes`, `whatif`, `check`,
//! `policy`, `confirm-removal`): each
//! asks the federator's REST API (docs/api.md) and prints a kubectl-style table or, with
//! `-o json`, the API's JSON as is. Answers are read with the federator's own response types
//! (`skybridge_federator::api::dto`), so the client cannot drift from the server.
//!
//! This module holds what they share: the `--api`/`-o` arguments, the URL, one GET that turns a
//! non-200 into the API's own error message, JSON decoding and ages.

pub(crate) mod catalog;
pub(crate) mod check;
pub(crate) mod confirm;
pub(crate) mod policy;
pub(crate) mod routes;
pub(crate) mod table;
pub(crate) mod whatif;

use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use serde::de::DeserializeOwned;
use skybridge_cli::http;

/// How long one request may take: some answers (routes, what-if) are computed on demand.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read (10,000 services from three clusters are ~10 MB).
const MAX_RESPONSE: u64 = 256 << 20;

/// The arguments every client command takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct ApiArgs {
    /// The federator's REST API, http[s]://host[:port][/prefix].
    #[arg(long, env = "SKYBRIDGE_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// With https: the CA certificates (PEM) to verify the API's certificate with, instead of
    /// the system's.
    #[arg(long, env = "SKYBRIDGE_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// With https: a client certificate (PEM chain) to present; an operator's
    /// (`skybridge ca issue --admin NAME`) authorizes writes without a token.
    #[arg(long, env = "SKYBRIDGE_CERT", value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert.
    #[arg(long, env = "SKYBRIDGE_KEY", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Output format: a table, or the API's JSON as is (pretty-printed).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `-o table|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("--api {0:?}: expected http[s]://host[:port][/prefix]")]
    BadUrl(String),
    #[error("--cacert, --cert and --key apply to an https:// --api only")]
    TlsOptionsWithoutHttps,
    #[error("setting up TLS for {0}")]
    Tls(String, #[source] http::TlsSetupError),
    #[error("{0}")]
    BadArgument(String),
    #[error("asking {0}")]
    Http(String, #[source] http::HttpError),
    #[error("{what}: the server answered {status}: {message}")]
    Status { what: String, status: u16, message: String },
    #[error("{what}: unreadable answer: {message}")]
    Malformed { what: String, message: String },
    #[error("starting the tokio runtime")]
    Runtime(#[source] std::io::Error),
    #[error("{failed} of {total} checks failed")]
    ChecksFailed { failed: usize, total: usize },
}

/// `http[s]://host[:port][/prefix]`, split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    /// Whether the scheme is https.
    pub https: bool,
    /// `host:port`, as dialed and as sent in `Host`.
    pub authority: String,
    /// A path the API is mounted under (behind a proxy), without the trailing slash.
    pub prefix: String,
}

impl Url {
    pub(crate) fn parse(s: &str) -> Result<Url, ClientError> {
        let bad = || ClientError::BadUrl(s.to_owned());
        let (https, rest) = match (s.strip_prefix("http://"), s.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(bad()),
        };
        let (host, prefix) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
        if host.is_empty() || host.contains(['@', '?', '#']) {
            return Err(bad());
        }
        // A port is present when the text after the last ':' is not inside an IPv6 literal.
        let has_port = host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
        let authority = if has_port { host.to_owned() } else { format!("{host}:{}", if https { 443 } else { 80 }) };
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("/{prefix}") };
        Ok(Url { https, authority, prefix })
    }

    /// The host part of the authority (what a server certificate is verified against).
    pub(crate) fn host(&self) -> &str {
        self.authority.rsplit_once(':').map_or(self.authority.as_str(), |(h, _)| h)
    }

    /// `scheme://authority` + `path`, for messages.
    pub(crate) fn show(&self, path: &str) -> String {
        format!("{}://{}{path}", if self.https { "https" } else { "http" }, self.authority)
    }
}

/// Percent-encodes everything but unreserved characters (a query value or a path segment).
pub(crate) fn encode(s: &str) -> String {
    s.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// `k=v&...`, percent-encoded; pairs whose value is `None` are left out.
pub(crate) fn encode_query(pairs: &[(&str, Option<&str>)]) -> String {
    pairs.iter().filter_map(|(k, v)| v.map(|v| format!("{}={}", encode(k), encode(v)))).collect::<Vec<_>>().join("&")
}

/// One federator (or gateway admin) to ask.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    pub url: Url,
    /// Set for https.
    pub tls: Option<http::TlsClient>,
}

impl Api {
    /// From `--api`, `--cacert`, `--cert` and `--key`.
    pub(crate) fn new(args: &ApiArgs) -> Result<Api, ClientError> {
        let url = Url::parse(&args.api)?;
        if !url.https {
            if args.cacert.is_some() || args.cert.is_some() {
                return Err(ClientError::TlsOptionsWithoutHttps);
            }
            return Ok(Api { url, tls: None });
        }
        let identity = args.cert.as_deref().zip(args.key.as_deref());
        let tls = http::TlsClient::new(url.host(), args.cacert.as_deref(), identity)
            .map_err(|e| ClientError::Tls(url.show(""), e))?;
        Ok(Api { url, tls: Some(tls) })
    }

    /// `GET path` (below the prefix); the body of a 200, or [`ClientError::Status`] with the
    /// API's error message.
    pub(crate) async fn get(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let accept = [("Accept", "application/json")];
        let (status, body) = self.request("GET", path, &accept).await?;
        if status == 200 { Ok(body) } else { Err(status_error(path, status, &body)) }
    }

    /// `method path` (below the prefix) with `headers` and no body: the status and body.
    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Vec<u8>), ClientError> {
        self.send(method, path, headers, &[]).await
    }

    /// `method path` (below the prefix) with `headers` and `body`: the status and body.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let full = format!("{}{path}", self.url.prefix);
        let req =
            http::Request { method, host: &self.url.authority, path: &full, headers, body, tls: self.tls.as_ref() };
        http::request(&self.url.authority, req, TIMEOUT, MAX_RESPONSE)
            .await
            .map_err(|e| ClientError::Http(self.url.show(&full), e))
    }

    /// `GET path`, decoded as `T`.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        decode(path, &self.get(path).await?)
    }
}

/// A non-success answer as [`ClientError::Status`], with the API's own message when it sent one.
pub(crate) fn status_error(path: &str, status: u16, body: &[u8]) -> ClientError {
    // The API's errors are {"error": "..."}; anything else (a proxy's page) is shown as text.
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().chars().take(200).collect());
    ClientError::Status { what: path.to_owned(), status, message }
}

/// Decodes a JSON body; `what` names it in the error.
pub(crate) fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Malformed { what: what.to_owned(), message: e.to_string() })
}

/// A JSON body as is, pretty-printed (`-o json`).
pub(crate) fn pretty(what: &str, body: &[u8]) -> Result<String, ClientError> {
    let v: serde_json::Value = decode(what, body)?;
    Ok(serde_json::to_string_pretty(&v).unwrap_or_default())
}

/// Runs `f` on a fresh single-threaded runtime: each command does a few requests, then exits.
pub(crate) fn block_on<F: Future>(f: F) -> Result<F::Output, ClientError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ClientError::Runtime)?;
    Ok(rt.block_on(f))
}

/// Now, in Unix milliseconds (the API's instants).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A kubectl-style age: `45s`, `12m`, `3h`, `5d` (the largest whole unit).
pub(crate) fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The age of the instant `at` (Unix ms) at `now`; a future instant (clock skew) is 0.
pub(crate) fn age_at(now: u64, at: u64) -> String {
    age(now.saturating_sub(at))
}

/// Parses a duration: `<integer><unit>`, unit `ms`, `s`, `m`, `h` or `d`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    match s.trim().strip_suffix('d').map(str::parse::<u64>) {
        Some(Ok(days)) => Ok(Duration::from_secs(days.saturating_mul(86_400))),
        Some(Err(_)) => Err(format!("{s:?} does not start with a whole number")),
        None => skybridge_api::config::duration::parse(s),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn urls_and_queries() {
        let u = |s: &str| Url::parse(s).map(|u| (u.authority, u.prefix));
        assert_eq!(u("http://127.0.0.1:8080").unwrap(), ("127.0.0.1:8080".into(), String::new()));
        assert_eq!(u("http://fed.example/skybridge/").unwrap(), ("fed.example:80".into(), "/skybridge".into()));
        assert_eq!(u("http://[::1]").unwrap().0, "[::1]:80");
        assert_eq!(u("http://[::1]:9000").unwrap().0, "[::1]:9000");
        let https = Url::parse("https://fed.example/x").unwrap();
        assert_eq!((https.https, https.authority.as_str(), https.host()), (true, "fed.example:443", "fed.example"));
        assert_eq!(Url::parse("https://[::1]:8443").unwrap().host(), "[::1]");
        for bad in ["ftp://x", "127.0.0.1:8080", "http://", "http://u@x", "https://"] {
            assert!(u(bad).is_err(), "{bad}");
        }
        assert_eq!(
            encode_query(&[("down", Some("gcp-1,azure-1")), ("from", None), ("service", Some("prod/web"))]),
            "down=gcp-1%2Cazure-1&service=prod%2Fweb"
        );
    }

    #[test]
    fn ages_and_durations() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(119_999), "119s");
        assert_eq!(age(120_000), "2m");
        assert_eq!(age(7_199_999), "119m");
        assert_eq!(age(2 * 3_600_000), "2h");
        assert_eq!(age(3 * 86_400_000), "3d");
        assert_eq!(age_at(5, 10), "0s");
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("xd").is_err());
        assert!(parse_duration("7").is_err());
    }

    /// Against a real listener: an API error becomes a message naming the status and the API's
    /// own explanation.
    #[tokio::test]
    async fn http_errors_carry_the_apis_message() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let body = r#"{"error":"down: unknown cluster nope-1","field":"down"}"#;
            let resp = format!("HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\n\r\n{body}", body.len());
            s.write_all(resp.as_bytes()).await.unwrap();
        });
        let api = |a: &str| Api { url: Url::parse(&format!("http://{a}")).unwrap(), tls: None };
        let e = api(&addr).get("/api/v1/whatif?down=nope-1").await.unwrap_err();
        assert_eq!(e.to_string(), "/api/v1/whatif?down=nope-1: the server answered 400: down: unknown cluster nope-1");
        let e = api("127.0.0.1:1").get("/").await.unwrap_err();
        assert!(matches!(e, ClientError::Http(_, http::HttpError::Connect { .. })), "{e}");
    }
}
