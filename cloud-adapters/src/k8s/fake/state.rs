//! The fake API server's data: objects per resource type, a global resourceVersion counter
//! (like etcd's revision), the event history watches replay from, open watches, and the knobs
//! tests turn (token, compaction, injected failures).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use axum::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Changes kept for watch resumption before the oldest are forgotten.
const HISTORY_LIMIT: usize = 10_000;

/// A resource type the fake serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group; "" for the core group (`/api/v1`).
    pub group: String,
    /// API version within the group (`v1`).
    pub version: String,
    /// Lower-case plural as in the URL (`services`).
    pub plural: String,
    /// Kind of one object (`Service`); lists are `<Kind>List`.
    pub kind: String,
}

impl ResourceDef {
    /// A resource type.
    pub fn new(group: &str, version: &str, plural: &str, kind: &str) -> Self {
        ResourceDef { group: group.into(), version: version.into(), plural: plural.into(), kind: kind.into() }
    }

    /// `v1`, `discovery.k8s.io/v1`, ...
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// Built-in types' list items carry no `kind`/`apiVersion` on a real server; custom
    /// resources' do.
    fn builtin(&self) -> bool {
        self.group.is_empty() || self.group.ends_with(".k8s.io")
    }

    /// core/v1 Services.
    pub fn services() -> Self {
        Self::new("", "v1", "services", "Service")
    }

    /// discovery.k8s.io/v1 EndpointSlices.
    pub fn endpoint_slices() -> Self {
        Self::new("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
    }

    /// A ServiceExport CRD of `group`/`version`.
    pub fn service_export(group: &str, version: &str) -> Self {
        Self::new(group, version, "serviceexports", "ServiceExport")
    }
}

/// A failure the fake answers with instead of the real response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An error status with a Kubernetes `Status` body (429 adds `Retry-After`).
    Status(u16),
    /// `200 OK` with a body that is not valid JSON.
    MalformedBody,
}

/// A fault for the next `count` requests that match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// What to answer.
    pub fault: Fault,
    /// How many matching requests get it.
    pub count: u32,
    /// Only watch requests (`Some(true)`), only lists (`Some(false)`), or both.
    pub watch: Option<bool>,
    /// Only requests whose path contains this.
    pub path_contains: Option<String>,
}

impl Injection {
    /// `fault` for the next `count` requests of any kind.
    pub fn new(fault: Fault, count: u32) -> Self {
        Injection { fault, count, watch: None, path_contains: None }
    }

    /// Only watch requests.
    pub fn watches(mut self) -> Self {
        self.watch = Some(true);
        self
    }

    /// Only list requests.
    pub fn lists(mut self) -> Self {
        self.watch = Some(false);
        self
    }

    /// Only requests whose path contains `s` (e.g. `endpointslices`).
    pub fn path(mut self, s: &str) -> Self {
        self.path_contains = Some(s.into());
        self
    }
}

/// A request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// URL path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// A watch (`watch=true|1`).
    pub watch: bool,
    /// The status the fake answered (200 for a watch that started).
    pub status: u16,
    /// Refused as too old (410 Gone, as HTTP status or as a watch's ERROR event).
    pub expired: bool,
}

/// Why a test-side change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FakeError {
    /// The object's type is unknown or not installed.
    #[error("object has no apiVersion/kind, or its type is not installed: {0}")]
    UnknownType(String),
    /// The object has no name.
    #[error("object has no metadata.name")]
    NoName,
    /// Nothing to delete.
    #[error("no such object: {0}")]
    NotFound(String),
}

/// One change, kept so that watches can resume from an older version and lists can be read
/// at an older version (continue tokens).
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub rv: u64,
    pub def: usize,
    pub kind: ChangeKind,
    pub key: (String, String),
    /// The object after the change (for a deletion: as deleted).
    pub obj: Value,
    /// The object before the change (none for an addition).
    pub prev: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// An open watch.
pub(crate) struct Watcher {
    pub def: usize,
    pub namespace: Option<String>,
    pub bookmarks: bool,
    pub tx: mpsc::UnboundedSender<Bytes>,
}

/// The whole fake cluster. Tests get `&mut Cluster` through
/// [`super::FakeApiServer::update`] to make several changes atomically.
pub struct Cluster {
    pub(crate) rv: u64,
    /// Installed types; a removed type leaves a `None` so indices stay valid.
    pub(crate) defs: Vec<Option<ResourceDef>>,
    pub(crate) objects: Vec<BTreeMap<(String, String), Value>>,
    pub(crate) history: VecDeque<Change>,
    /// Versions below this are compacted away: watching or continuing from them is 410 Gone.
    pub(crate) compacted: u64,
    pub(crate) token: Option<String>,
    pub(crate) injections: Vec<Injection>,
    pub(crate) forbidden: BTreeSet<String>,
    pub(crate) watchers: Vec<Watcher>,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) watch_gone_as_http: bool,
}

impl Cluster {
    pub(crate) fn new(token: Option<String>) -> Self {
        Cluster {
            // Real clusters never start at 0; a non-trivial start catches "0 means unset" bugs.
            rv: 1000,
            defs: Vec::new(),
            objects: Vec::new(),
            history: VecDeque::new(),
            compacted: 0,
            token,
            injections: Vec::new(),
            forbidden: BTreeSet::new(),
            watchers: Vec::new(),
            requests: Vec::new(),
            watch_gone_as_http: false,
        }
    }

    /// Installs a resource type (a CRD); no-op if present.
    pub fn install(&mut self, def: ResourceDef) {
        if self.find_def(&def.api_version(), &def.kind).is_none() {
            self.defs.push(Some(def));
            self.objects.push(BTreeMap::new());
        }
    }

    /// Removes a resource type with its objects (a CRD deletion); its watches end.
    pub fn uninstall(&mut self, group: &str, plural: &str) {
        for (i, d) in self.defs.iter_mut().enumerate() {
            if d.as_ref().is_some_and(|d| d.group == group && d.plural == plural) {
                *d = None;
                self.objects[i].clear();
                self.watchers.retain(|w| w.def != i);
            }
        }
    }

    pub(crate) fn find_def(&self, api_version: &str, kind: &str) -> Option<usize> {
        self.defs.iter().position(|d| d.as_ref().is_some_and(|d| d.api_version() == api_version && d.kind == kind))
    }

    pub(crate) fn find_path(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.defs
            .iter()
            .position(|d| d.as_ref().is_some_and(|d| d.group == group && d.version == version && d.plural == plural))
    }

    pub(crate) fn def(&self, i: usize) -> Option<&ResourceDef> {
        self.defs.get(i).and_then(Option::as_ref)
    }

    /// Creates or replaces an object (by apiVersion, kind, namespace, name), as a server-side
    /// apply would: the server sets `resourceVersion`, `uid`, `creationTimestamp` (kept on
    /// update unless the test sets one on creation). Returns the stored object.
    pub fn apply(&mut self, mut obj: Value) -> Result<Value, FakeError> {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let def = self
            .find_def(&api_version, &kind)
            .ok_or_else(|| FakeError::UnknownType(format!("{api_version} {kind}")))?;
        let name = obj["metadata"]["name"].as_str().ok_or(FakeError::NoName)?.to_owned();
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
        let key = (ns, name);
        self.rv += 1;
        let prev = self.objects[def].get(&key).cloned();
        let meta = obj["metadata"].as_object_mut().ok_or(FakeError::NoName)?;
        match &prev {
            Some(p) => {
                meta.insert("uid".into(), p["metadata"]["uid"].clone());
                meta.insert("creationTimestamp".into(), p["metadata"]["creationTimestamp"].clone());
            }
            None => {
                meta.insert("uid".into(), json!(format!("00000000-0000-4000-8000-{:012}", self.rv)));
                if !meta.contains_key("creationTimestamp") {
                    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
                }
            }
        }
        meta.insert("resourceVersion".into(), json!(self.rv.to_string()));
        let kind = if prev.is_some() { ChangeKind::Modified } else { ChangeKind::Added };
        self.objects[def].insert(key.clone(), obj.clone());
        self.record(Change { rv: self.rv, def, kind, key, obj: obj.clone(), prev });
        Ok(obj)
    }

    /// Deletes an object; the DELETED event carries it with the deletion's resourceVersion.
    pub fn delete(&mut self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Result<(), FakeError> {
        let def =
            self.find_def(api_version, kind).ok_or_else(|| FakeError::UnknownType(format!("{api_version} {kind}")))?;
        let key = (namespace.to_owned(), name.to_owned());
        let prev = self.objects[def].remove(&key).ok_or_else(|| FakeError::NotFound(format!("{namespace}/{name}")))?;
        self.rv += 1;
        let mut obj = prev.clone();
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(Change { rv: self.rv, def, kind: ChangeKind::Deleted, key, obj, prev: Some(prev) });
        Ok(())
    }

    /// Deletes the object `obj` names.
    pub fn delete_obj(&mut self, obj: &Value) -> Result<(), FakeError> {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        self.delete(
            &s(&obj["apiVersion"]),
            &s(&obj["kind"]),
            &s(&obj["metadata"]["namespace"]),
            &s(&obj["metadata"]["name"]),
        )
    }

    /// Forgets all history up to now, as etcd compaction and the watch cache window do:
    /// watches and continue tokens from older versions get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// Ends every open watch, as an API server restart or watch timeout does.
    pub fn close_watches(&mut self) {
        self.watchers.clear();
    }

    /// Sends a BOOKMARK with the current resourceVersion to every watch that asked for them.
    pub fn bookmark(&mut self) {
        let rv = self.rv;
        let defs = &self.defs;
        self.watchers.retain(|w| {
            if !w.bookmarks {
                return true;
            }
            let Some(d) = defs.get(w.def).and_then(Option::as_ref) else { return false };
            w.tx.send(bookmark_line(d, rv, None)).is_ok()
        });
    }

    /// Requires `Authorization: Bearer <token>` (`None`: no authentication).
    pub fn set_token(&mut self, token: Option<&str>) {
        self.token = token.map(str::to_owned);
    }

    /// Adds a failure for matching requests.
    pub fn inject(&mut self, injection: Injection) {
        self.injections.push(injection);
    }

    /// Drops every pending injection.
    pub fn clear_injections(&mut self) {
        self.injections.clear();
    }

    /// Answers 403 for every request on `plural` (RBAC not granted).
    pub fn forbid(&mut self, plural: &str, forbidden: bool) {
        if forbidden {
            self.forbidden.insert(plural.into());
        } else {
            self.forbidden.remove(plural);
        }
    }

    /// Makes an expired watch answer HTTP 410 instead of a 200 with an ERROR event (both
    /// occur in the wild, depending on the API server's version and watch cache).
    pub fn set_watch_gone_as_http(&mut self, on: bool) {
        self.watch_gone_as_http = on;
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The requests seen so far.
    pub fn requests(&self) -> &[RecordedRequest] {
        &self.requests
    }

    /// Number of open watches.
    pub fn open_watches(&self) -> usize {
        self.watchers.iter().filter(|w| !w.tx.is_closed()).count()
    }

    fn record(&mut self, change: Change) {
        let line = event_line(change.kind.as_str(), &change.obj);
        let ns = change.key.0.clone();
        self.watchers.retain(|w| {
            if w.def != change.def || w.namespace.as_ref().is_some_and(|n| *n != ns) {
                return !w.tx.is_closed();
            }
            w.tx.send(line.clone()).is_ok()
        });
        self.history.push_back(change);
        // Like the watch cache's window: the oldest history falls off.
        while self.history.len() > HISTORY_LIMIT {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// The objects of type `def` as they were at `rv` (which must not be compacted), by
    /// undoing newer changes.
    pub(crate) fn objects_at(&self, def: usize, rv: u64) -> BTreeMap<(String, String), Value> {
        let mut objs = self.objects[def].clone();
        for c in self.history.iter().rev().take_while(|c| c.rv > rv).filter(|c| c.def == def) {
            match (&c.kind, &c.prev) {
                (ChangeKind::Added, _) | (_, None) => {
                    objs.remove(&c.key);
                }
                (_, Some(prev)) => {
                    objs.insert(c.key.clone(), prev.clone());
                }
            }
        }
        objs
    }

    /// The watch events of type `def` (and namespace) after `rv`.
    pub(crate) fn events_since(&self, def: usize, namespace: Option<&str>, rv: u64) -> Vec<Bytes> {
        self.history
            .iter()
            .filter(|c| c.rv > rv && c.def == def && namespace.is_none_or(|n| c.key.0 == n))
            .map(|c| event_line(c.kind.as_str(), &c.obj))
            .collect()
    }

    /// Takes the first injection matching a request, counting it down.
    pub(crate) fn take_fault(&mut self, path: &str, watch: bool) -> Option<Fault> {
        let i = self.injections.iter().position(|inj| {
            inj.count > 0
                && inj.watch.is_none_or(|w| w == watch)
                && inj.path_contains.as_deref().is_none_or(|p| path.contains(p))
        })?;
        let inj = &mut self.injections[i];
        inj.count -= 1;
        let fault = inj.fault.clone();
        if inj.count == 0 {
            self.injections.remove(i);
        }
        Some(fault)
    }
}

/// One watch event as a line of the stream.
pub(crate) fn event_line(kind: &str, obj: &Value) -> Bytes {
    let mut s = json!({ "type": kind, "object": obj }).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// A BOOKMARK event: only kind, apiVersion and resourceVersion (plus the initial-events-end
/// annotation when it ends a streaming list).
pub(crate) fn bookmark_line(def: &ResourceDef, rv: u64, annotation: Option<&str>) -> Bytes {
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if let Some(a) = annotation {
        meta["annotations"] = json!({ a: "true" });
    }
    event_line("BOOKMARK", &json!({ "kind": def.kind, "apiVersion": def.api_version(), "metadata": meta }))
}

/// Lists carry built-in objects without type fields, like a real server.
pub(crate) fn list_item(def: &ResourceDef, obj: &Value) -> Value {
    let mut obj = obj.clone();
    if def.builtin()
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("kind");
        m.remove("apiVersion");
    }
    obj
}

fn now_rfc3339() -> String {
    // Kubernetes timestamps have second precision.
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .map(|t| t.to_string())
        .unwrap_or_else(|_| now.to_string())
}
