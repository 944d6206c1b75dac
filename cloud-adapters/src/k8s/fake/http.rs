//! The fake's HTTP side: Kubernetes REST paths, list and watch semantics and error bodies as
//! described in the API concepts (efficient detection of changes, bookmarks, 410 Gone,
//! chunking with `limit`/`continue`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::state::{Cluster, Fault, RecordedRequest, ResourceDef, Watcher, bookmark_line, event_line, list_item};

/// The state shared by the handler and the test side.
pub(crate) type Shared = Arc<Mutex<Cluster>>;

/// A real API server picks a random duration around its `--min-request-timeout` (1800 s) when
/// the client sets no `timeoutSeconds`.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// What to answer.
enum Reply {
    Json(StatusCode, Value),
    Raw(StatusCode, &'static str),
    Watch { lines: Vec<Bytes>, live: Option<mpsc::UnboundedReceiver<Bytes>>, timeout: Duration },
}

impl Reply {
    fn code(&self) -> u16 {
        match self {
            Reply::Json(s, _) | Reply::Raw(s, _) => s.as_u16(),
            Reply::Watch { .. } => 200,
        }
    }

    /// A watch refused as too old: HTTP 410, or a 200 whose only event is the ERROR (Expired).
    fn expired(&self) -> bool {
        match self {
            Reply::Json(s, _) => *s == StatusCode::GONE,
            Reply::Watch { lines, live: None, .. } => {
                lines.len() == 1 && lines[0].windows(7).any(|w| w == b"\"ERROR\"")
            }
            Reply::Raw(..) | Reply::Watch { .. } => false,
        }
    }
}

/// A Kubernetes `Status` failure body.
fn status(code: u16, reason: &str, message: &str) -> Reply {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    Reply::Json(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body)
}

fn not_found() -> Reply {
    status(404, "NotFound", "the server could not find the requested resource")
}

fn expired(message: &str) -> Reply {
    status(410, "Expired", message)
}

/// The single handler: routes by hand, because Kubernetes paths nest optional parts.
pub(crate) async fn handle(State(shared): State<Shared>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let raw_query = req.uri().query().unwrap_or_default().to_owned();
    let query = parse_query(&raw_query);
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let reply = {
        // A poisoned lock means a test panicked while holding it; the data is still usable.
        let mut c = shared.lock().unwrap_or_else(|p| p.into_inner());
        let reply = respond(&mut c, req.method(), &path, &query, watch, auth.as_deref());
        c.requests.push(RecordedRequest {
            path,
            query: raw_query,
            watch,
            status: reply.code(),
            expired: reply.expired(),
        });
        reply
    };
    into_response(reply)
}

fn into_response(reply: Reply) -> Response {
    match reply {
        Reply::Json(code, body) => {
            let mut resp = (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
            if code == StatusCode::TOO_MANY_REQUESTS {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            resp
        }
        Reply::Raw(code, body) => (code, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Reply::Watch { lines, live, timeout } => {
            let deadline = Instant::now() + timeout;
            let first = futures::stream::iter(lines);
            let rest = futures::stream::unfold(live, move |live| async move {
                let mut rx = live?;
                tokio::select! {
                    m = rx.recv() => m.map(|b| (b, Some(rx))),
                    // The server ends a watch at its timeout; the client resumes it.
                    _ = tokio::time::sleep_until(deadline) => None,
                }
            });
            let body = Body::from_stream(first.chain(rest).map(Ok::<_, Infallible>));
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
    }
}

fn respond(
    c: &mut Cluster,
    method: &Method,
    path: &str,
    q: &BTreeMap<String, String>,
    watch: bool,
    auth: Option<&str>,
) -> Reply {
    if let Some(token) = &c.token
        && auth.and_then(|a| a.strip_prefix("Bearer ")) != Some(token.as_str())
    {
        return status(401, "Unauthorized", "Unauthorized");
    }
    match c.take_fault(path, watch) {
        Some(Fault::Status(429)) => {
            return status(429, "TooManyRequests", "Too many requests, please try again later.");
        }
        Some(Fault::Status(code)) => {
            let reason = match code {
                500 => "InternalError",
                503 => "ServiceUnavailable",
                504 => "Timeout",
                _ => "Unknown",
            };
            return status(code, reason, "Internal error occurred: injected by the test");
        }
        Some(Fault::MalformedBody) if watch => {
            // A complete line whose object does not decode (a name that is a number).
            let line = b"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":42,\"resourceVersion\":\"1\"}}}\n";
            return Reply::Watch { lines: vec![Bytes::from_static(line)], live: None, timeout: Duration::ZERO };
        }
        Some(Fault::MalformedBody) => {
            return Reply::Raw(StatusCode::OK, "{\"kind\":\"List\",\"items\":[{\"metadata\":");
        }
        None => {}
    }
    if method != Method::GET {
        return status(405, "MethodNotAllowed", "the fake API server only serves GET");
    }
    let Some((def, namespace, name)) = route(c, path) else { return not_found() };
    let Some(d) = c.def(def).cloned() else { return not_found() };
    if c.forbidden.contains(&d.plural) {
        let group = &d.group;
        let msg = format!(
            "{plural}{dot}{group} is forbidden: User \"system:serviceaccount:skybridge:federator\" cannot {verb} \
             resource \"{plural}\" in API group \"{group}\" at the cluster scope",
            plural = d.plural,
            dot = if group.is_empty() { "" } else { "." },
            verb = if watch { "watch" } else { "list" },
        );
        return status(403, "Forbidden", &msg);
    }
    if q.get("labelSelector").is_some_and(|s| !s.is_empty()) || q.get("fieldSelector").is_some_and(|s| !s.is_empty()) {
        // Loud rather than silently wrong: a client that starts using selectors needs the
        // fake to grow them first.
        return status(400, "BadRequest", "the fake API server does not support label or field selectors");
    }
    if let Some(name) = name {
        return get(c, def, &d, namespace.unwrap_or_default(), &name);
    }
    if watch { start_watch(c, def, &d, namespace, q) } else { list(c, def, &d, namespace.as_deref(), q) }
}

/// Maps a path to `(type, namespace, name)`.
fn route(c: &Cluster, path: &str) -> Option<(usize, Option<String>, Option<String>)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (ns, plural, name) = match rest {
        [plural] => (None, *plural, None),
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        _ => return None,
    };
    let def = c.find_path(group, version, plural)?;
    Some((def, ns.map(str::to_owned), name.map(str::to_owned)))
}

fn get(c: &Cluster, def: usize, d: &ResourceDef, ns: String, name: &str) -> Reply {
    match c.objects[def].get(&(ns, name.to_owned())) {
        Some(obj) => Reply::Json(StatusCode::OK, obj.clone()),
        None => status(404, "NotFound", &format!("{} \"{name}\" not found", d.plural)),
    }
}

fn list(c: &Cluster, def: usize, d: &ResourceDef, ns: Option<&str>, q: &BTreeMap<String, String>) -> Reply {
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    let (at, start_after) = match q.get("continue").filter(|t| !t.is_empty()) {
        Some(token) => match decode_continue(token) {
            Some((rv, plural, key)) if plural == d.plural => {
                if rv < c.compacted {
                    return expired(
                        "The provided continue parameter is too old to display a consistent list result. You can \
                         start a new list without the continue parameter.",
                    );
                }
                (rv, Some(key))
            }
            _ => return status(400, "BadRequest", "continue key is not valid"),
        },
        None => match q.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => (c.rv, None),
            Some(v) => {
                let Ok(n) = v.parse::<u64>() else {
                    return status(400, "BadRequest", &format!("invalid resource version: {v}"));
                };
                if n > c.rv {
                    return status(504, "Timeout", &format!("Too large resource version: {n}, current: {}", c.rv));
                }
                if q.get("resourceVersionMatch").map(String::as_str) == Some("Exact") {
                    if n < c.compacted {
                        return expired(&format!("too old resource version: {n} ({})", c.compacted));
                    }
                    (n, None)
                } else {
                    (c.rv, None)
                }
            }
        },
    };
    let objs = if at == c.rv { c.objects[def].clone() } else { c.objects_at(def, at) };
    let mut matching = objs
        .into_iter()
        .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
        .filter(|(k, _)| start_after.as_ref().is_none_or(|s| k > s))
        .peekable();
    let mut items = Vec::new();
    let mut last = None;
    while let Some((k, v)) = matching.next_if(|_| limit.is_none_or(|l| items.len() < l)) {
        items.push(list_item(d, &v));
        last = Some(k);
    }
    let remaining = matching.count();
    let mut meta = json!({ "resourceVersion": at.to_string() });
    if remaining > 0
        && let Some(last) = last
    {
        meta["continue"] = json!(encode_continue(at, &d.plural, &last));
        meta["remainingItemCount"] = json!(remaining);
    }
    Reply::Json(
        StatusCode::OK,
        json!({ "kind": format!("{}List", d.kind), "apiVersion": d.api_version(), "metadata": meta, "items": items }),
    )
}

fn start_watch(
    c: &mut Cluster,
    def: usize,
    d: &ResourceDef,
    ns: Option<String>,
    q: &BTreeMap<String, String>,
) -> Reply {
    let flag = |k: &str| matches!(q.get(k).map(String::as_str), Some("true" | "1"));
    let bookmarks = flag("allowWatchBookmarks");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_WATCH_TIMEOUT);
    let rv = q.get("resourceVersion").map(String::as_str).unwrap_or_default();
    let lines = if rv.is_empty() || rv == "0" || flag("sendInitialEvents") {
        // "Get state and start at most recent": synthetic ADDED events for what exists.
        let mut objs: Vec<&Value> = c.objects[def]
            .iter()
            .filter(|((n, _), _)| ns.as_deref().is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
            .collect();
        objs.sort_by_key(|o| o["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse::<u64>().ok()));
        let mut lines: Vec<Bytes> = objs.into_iter().map(|o| event_line("ADDED", o)).collect();
        if flag("sendInitialEvents") && bookmarks {
            lines.push(bookmark_line(d, c.rv, Some("k8s.io/initial-events-end")));
        }
        lines
    } else {
        let Ok(n) = rv.parse::<u64>() else {
            return status(400, "BadRequest", &format!("invalid resource version: {rv}"));
        };
        if n < c.compacted {
            let msg = format!("too old resource version: {n} ({})", c.compacted);
            if c.watch_gone_as_http {
                return expired(&msg);
            }
            // What a current API server does: 200, then one ERROR event, then the end.
            let Reply::Json(_, body) = expired(&msg) else { return expired(&msg) };
            return Reply::Watch { lines: vec![event_line("ERROR", &body)], live: None, timeout };
        }
        c.events_since(def, ns.as_deref(), n)
    };
    let (tx, rx) = mpsc::unbounded_channel();
    c.watchers.push(Watcher { def, namespace: ns, bookmarks, tx });
    Reply::Watch { lines, live: Some(rx), timeout }
}

/// Continue tokens are opaque to clients; this one is hex-encoded JSON (hex survives any
/// query encoding).
fn encode_continue(rv: u64, plural: &str, key: &(String, String)) -> String {
    let raw = json!({ "rv": rv, "type": plural, "ns": key.0, "name": key.1 }).to_string();
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> Option<(u64, String, (String, String))> {
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| token.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    Some((v["rv"].as_u64()?, s("type")?, (s("ns")?, s("name")?)))
}

/// Parses `application/x-www-form-urlencoded` query parameters.
fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("watch=true&labelSelector=a%3Db&x=1+2&continue=6162");
        assert_eq!(q["labelSelector"], "a=b");
        assert_eq!(q["x"], "1 2");
        assert_eq!(q["continue"], "6162");
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("%4"), "%4");
    }

    #[test]
    fn continue_round_trip() {
        let t = encode_continue(7, "services", &("ns".into(), "a\u{0}".into()));
        assert_eq!(decode_continue(&t), Some((7, "services".into(), ("ns".into(), "a\u{0}".into()))));
        assert_eq!(decode_continue("zz"), None);
    }
}
