//! `skybridge whatif`: asks the federator where connections would go if some clusters went
//! down (`GET /api/v1/whatif`, which changes nothing) and prints the routes that move.
//!
//! The answer is read with the federator's own response type, so the two cannot drift apart.

use std::fmt::Write as _;
use std::time::Duration;

use clap::Args;
use skybridge_cli::http;
use skybridge_federator::api::dto::{RouteOutcome, WhatIfResponse, WhatIfRoute};

/// How long the whole request may take: the federator computes the answer on demand.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read (10,000 services from three clusters are ~10 MB).
const MAX_RESPONSE: u64 = 256 << 20;

/// Arguments of `skybridge whatif`.
#[derive(Debug, Args)]
pub struct WhatIfArgs {
    /// The federator's REST API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// Clusters to treat as gone, comma-separated (gcp-1,azure-1).
    #[arg(long)]
    pub down: String,
    /// Only this service (namespace/name).
    #[arg(long)]
    pub service: Option<String>,
    /// Only routes from this cluster's gateways.
    #[arg(long)]
    pub from: Option<String>,
    /// Print the federator's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also list the routes that do not change.
    #[arg(long)]
    pub all: bool,
}

/// Why the what-if question got no answer.
#[derive(Debug, thiserror::Error)]
pub enum WhatIfError {
    #[error("--api {0:?}: expected http://host[:port] (https is not supported)")]
    BadUrl(String),
    #[error("asking the federator")]
    Http(#[from] http::HttpError),
    #[error("the federator answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("unreadable answer from the federator: {0}")]
    Malformed(String),
}

/// Runs the command: one request, then a table (or the JSON) on stdout.
pub fn run(args: &WhatIfArgs) -> anyhow::Result<()> {
    let url = Url::parse(&args.api)?;
    let mut query = vec![("down", args.down.as_str())];
    query.extend(args.service.as_deref().map(|s| ("service", s)));
    query.extend(args.from.as_deref().map(|f| ("from", f)));
    let path = format!("{}/api/v1/whatif?{}", url.prefix, encode_query(&query));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let body = rt.block_on(get(&url.authority, &path))?;
    if args.json {
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| WhatIfError::Malformed(e.to_string()))?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let answer: WhatIfResponse =
            serde_json::from_slice(&body).map_err(|e| WhatIfError::Malformed(e.to_string()))?;
        print!("{}", table(&answer, args.all));
    }
    Ok(())
}

/// `http://host[:port][/prefix]`, split into what the request needs.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    /// `host:port`, as dialed and as sent in `Host`.
    authority: String,
    /// A path the API is mounted under (behind a proxy), without the trailing slash.
    prefix: String,
}

impl Url {
    fn parse(s: &str) -> Result<Url, WhatIfError> {
        let bad = || WhatIfError::BadUrl(s.to_owned());
        let rest = s.strip_prefix("http://").ok_or_else(bad)?;
        let (host, prefix) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
        if host.is_empty() || host.contains(['@', '?', '#']) {
            return Err(bad());
        }
        // A port is present when the text after the last ':' is not inside an IPv6 literal.
        let has_port = host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
        let authority = if has_port { host.to_owned() } else { format!("{host}:80") };
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("/{prefix}") };
        Ok(Url { authority, prefix })
    }
}

/// `k=v&...`, percent-encoding everything but unreserved characters.
fn encode_query(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes().fold(String::new(), |mut out, b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "%{b:02X}");
            }
            out
        })
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// GETs `path` and returns the body of a 200; other statuses become [`WhatIfError::Status`]
/// with the API's error message.
async fn get(authority: &str, path: &str) -> Result<Vec<u8>, WhatIfError> {
    let (status, body) = http::get(authority, authority, path, TIMEOUT, MAX_RESPONSE).await?;
    if status == 200 {
        return Ok(body);
    }
    // The API's errors are {"error": "..."}; anything else (a proxy's page) is shown as text.
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().chars().take(200).collect());
    Err(WhatIfError::Status { status, message })
}

/// Where first tries go: one cluster, or the split (`aws-1 70% + gcp-1 30%`).
fn target(o: &RouteOutcome) -> String {
    match o.shares.as_slice() {
        [] => "unreachable".into(),
        [one] => one.cluster.clone(),
        many => many.iter().map(|s| format!("{} {:.0}%", s.cluster, s.share * 100.0)).collect::<Vec<_>>().join(" + "),
    }
}

fn rtt(o: &RouteOutcome) -> String {
    match o.expected_rtt_ms {
        _ if o.unreachable => "-".into(),
        Some(ms) => format!("{ms:.1} ms"),
        None => "? ms".into(),
    }
}

/// The answer as a table of the routes that move (every route with `all`), and a summary.
pub fn table(answer: &WhatIfResponse, all: bool) -> String {
    let rows: Vec<&WhatIfRoute> = answer.routes.iter().filter(|r| all || r.changed).collect();
    let mut cells =
        vec![["SERVICE".to_owned(), "FROM".into(), "ROUTE (before → after)".into(), "RTT (before → after)".into()]];
    cells.extend(rows.iter().map(|r| {
        [
            format!("{}/{}", r.namespace, r.name),
            r.from.clone(),
            format!("{} → {}", target(&r.before), target(&r.after)),
            format!("{} → {}", rtt(&r.before), rtt(&r.after)),
        ]
    }));
    let width = |i: usize| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2)];
    let s = &answer.summary;
    let mut out = format!("If {} went down:\n", answer.down.join(", "));
    if rows.is_empty() {
        let _ = writeln!(out, "  no route changes ({} routes compared)", s.routes);
    } else {
        for c in &cells {
            let _ = writeln!(
                out,
                "  {:<w0$}  {:<w1$}  {:<w2$}  {}",
                c[0],
                c[1],
                c[2],
                c[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "routes changing: {} of {}; services affected: {}; services left with no route from some cluster: {}",
        s.routes_changed, s.routes, s.services_affected, s.services_unreachable
    );
    let hidden = answer.routes.len() - rows.len();
    if hidden > 0 {
        let _ = writeln!(out, "({hidden} unchanged routes not shown; --all lists them.)");
    }
    out
}

#[cfg(test)]
mod tests {
    use skybridge_federator::api::dto::{RouteShare, WhatIfSummary};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn outcome(shares: &[(&str, f64)], rtt: Option<f64>) -> RouteOutcome {
        RouteOutcome {
            preferred: shares.first().map(|s| s.0.to_owned()),
            shares: shares.iter().map(|(c, s)| RouteShare { cluster: (*c).into(), share: *s }).collect(),
            expected_rtt_ms: rtt,
            unreachable: shares.is_empty(),
        }
    }

    fn route(name: &str, from: &str, before: RouteOutcome, after: RouteOutcome) -> WhatIfRoute {
        let changed = before.shares != after.shares;
        WhatIfRoute { namespace: "prod".into(), name: name.into(), from: from.into(), before, after, changed }
    }

    fn answer() -> WhatIfResponse {
        WhatIfResponse {
            down: vec!["gcp-1".into()],
            summary: WhatIfSummary { routes: 3, routes_changed: 2, services_affected: 2, services_unreachable: 1 },
            routes: vec![
                route("db", "aws-1", outcome(&[("gcp-1", 1.0)], Some(12.0)), outcome(&[], None)),
                route(
                    "payments",
                    "aws-1",
                    outcome(&[("gcp-1", 0.5), ("azure-1", 0.5)], Some(20.25)),
                    outcome(&[("azure-1", 1.0)], None),
                ),
                route("web", "aws-1", outcome(&[("aws-1", 1.0)], Some(0.0)), outcome(&[("aws-1", 1.0)], Some(0.0))),
            ],
        }
    }

    #[test]
    fn table_lists_the_routes_that_move() {
        let want = "\
If gcp-1 went down:
  SERVICE        FROM   ROUTE (before → after)             RTT (before → after)
  prod/db        aws-1  gcp-1 → unreachable                12.0 ms → -
  prod/payments  aws-1  gcp-1 50% + azure-1 50% → azure-1  20.2 ms → ? ms

routes changing: 2 of 3; services affected: 2; services left with no route from some cluster: 1
(1 unchanged routes not shown; --all lists them.)
";
        assert_eq!(table(&answer(), false), want);
        let all = table(&answer(), true);
        assert!(all.contains("  prod/web       aws-1  aws-1 → aws-1"), "{all}");
        assert!(!all.contains("not shown"), "{all}");
    }

    #[test]
    fn table_says_when_nothing_moves() {
        let mut a = answer();
        a.routes.retain(|r| !r.changed);
        a.summary = WhatIfSummary { routes: 1, ..Default::default() };
        assert!(table(&a, false).starts_with("If gcp-1 went down:\n  no route changes (1 routes compared)\n"));
    }

    #[test]
    fn urls_and_queries() {
        let u = |s: &str| Url::parse(s).map(|u| (u.authority, u.prefix));
        assert_eq!(u("http://127.0.0.1:8080").unwrap(), ("127.0.0.1:8080".into(), String::new()));
        assert_eq!(u("http://fed.example/skybridge/").unwrap(), ("fed.example:80".into(), "/skybridge".into()));
        assert_eq!(u("http://[::1]").unwrap().0, "[::1]:80");
        assert_eq!(u("http://[::1]:9000").unwrap().0, "[::1]:9000");
        for bad in ["https://x", "127.0.0.1:8080", "http://", "http://u@x"] {
            assert!(u(bad).is_err(), "{bad}");
        }
        assert_eq!(
            encode_query(&[("down", "gcp-1,azure-1"), ("service", "prod/web")]),
            "down=gcp-1%2Cazure-1&service=prod%2Fweb"
        );
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
        let e = get(&addr, "/api/v1/whatif?down=nope-1").await.unwrap_err();
        assert_eq!(e.to_string(), "the federator answered 400: down: unknown cluster nope-1");
        let e = get("127.0.0.1:1", "/").await.unwrap_err();
        assert!(matches!(e, WhatIfError::Http(http::HttpError::Connect { .. })), "{e}");
    }
}
