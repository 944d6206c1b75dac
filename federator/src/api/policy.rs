//! Routing policies over the API: the request/response shape, parsing with errors that name the
//! offending JSON field, validation, and the authorization of writes (a bearer token, or an
//! operator's client certificate over HTTPS).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use skybridge_api::identity::{Role, SpiffeId};
use skybridge_api::model::ClusterId;
use skybridge_api::routing::SourceMatcher;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::store::Policy;

use super::Ctx;
use super::error::ApiError;

/// A service's routing policy. Every field is optional in a PUT; the PUT replaces the whole
/// policy. Unknown fields are rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDto {
    /// Traffic weight per cluster id, each 0..=100; if any are given they must sum to 100.
    /// Empty: no weighted split.
    #[serde(default)]
    #[schema(example = json!({"aws-prod-use1": 70, "gcp-prod-euw1": 30}))]
    pub weights: BTreeMap<String, i64>,
    /// Explicit failover order of cluster ids; clusters not listed come after, by latency.
    #[serde(default)]
    pub failover: Vec<String>,
    /// Cluster ids never to send this service's traffic to.
    #[serde(default)]
    pub avoid: Vec<String>,
    /// Sources allowed to reach the service: cluster ids, cluster globs (`gcp-*`) or trust
    /// domains (`spiffe://<domain>`); null or absent: each receiving gateway's
    /// `[authorization] default` decides.
    #[serde(default)]
    #[schema(example = json!(["aws-prod-*", "spiffe://gcp.corp.example"]))]
    pub allow: Option<Vec<String>>,
    /// Sources refused whatever `allow` says (same entry forms; deny wins).
    #[serde(default)]
    pub deny: Vec<String>,
}

impl From<&Policy> for PolicyDto {
    fn from(p: &Policy) -> Self {
        let ids = |v: &[ClusterId]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        PolicyDto {
            weights: p.weights.iter().map(|(k, w)| (k.to_string(), i64::from(*w))).collect(),
            failover: ids(&p.failover),
            avoid: ids(&p.avoid),
            allow: p.allow.as_ref().map(|a| a.iter().map(ToString::to_string).collect()),
            deny: p.deny.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A policy together with the service it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyResponse {
    pub namespace: String,
    pub name: String,
    /// Whether the catalog currently has the service. A policy may be set before its service
    /// appears; it then takes effect when it does.
    pub in_catalog: bool,
    /// Clusters the policy names that the catalog does not have (a typo, or a cluster not
    /// synced yet): the policy is kept, and these entries take effect if the cluster appears.
    #[serde(default)]
    pub unknown_clusters: Vec<String>,
    /// Where the policy comes from: `api` (set through this API) or `file` (the policies file,
    /// which the API cannot change).
    pub source: crate::policies::Origin,
    pub policy: PolicyDto,
}

/// `GET /api/v1/policies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoliciesResponse {
    /// The federation's `[authorization] default` (`allow` or `deny`), pushed to every gateway
    /// with the policies: each admits a source no list names under the stricter of it and its own.
    #[schema(example = "deny")]
    pub authorization_default: String,
    /// Sorted by namespace, then name.
    pub policies: Vec<PolicyResponse>,
}

/// Largest policy body accepted (a policy names a few clusters; a megabyte of weights is an
/// attack or a bug).
pub const MAX_BODY: usize = 64 * 1024;

/// Parses and validates a PUT body. Every error names the JSON path of the offending value.
pub fn parse_policy(body: &[u8]) -> Result<Policy, ApiError> {
    // Two steps: syntax first (with line and column), then the shape. Checking for an object
    // in between matters because serde would also read a struct from a JSON array.
    let value: serde_json::Value =
        serde_json::from_slice::<Unique>(body).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?.0;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object (a policy)"));
    }
    let dto: PolicyDto = serde_path_to_error::deserialize(value).map_err(json_error)?;
    validate(dto)
}

/// A JSON value in which no object has a key twice (serde_json keeps the last one silently, so
/// `{"avoid": ["a"], "avoid": []}` would mean whatever the last writer of the body chose).
struct Unique(serde_json::Value);

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Unique(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(out.into())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Unique(v) = map.next_value()?;
            if out.insert(k.clone(), v).is_some() {
                return Err(serde::de::Error::custom(format!("key {k:?} appears twice in one object")));
            }
        }
        Ok(out.into())
    }
}

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let msg = e.inner().to_string();
    // serde_path_to_error renders the document root as ".".
    let at = (path != ".").then_some(path);
    // Name the unknown field itself, whether or not the path already ends with it (that
    // depends on how the deserializer reports map keys).
    if let Some(name) = msg.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
        let field = match at {
            Some(p) if p == name || p.ends_with(&format!(".{name}")) => p,
            Some(p) => format!("{p}.{name}"),
            None => name.to_owned(),
        };
        return ApiError::bad_field(field.clone(), format!("{field}: {msg}"));
    }
    match at {
        Some(field) => ApiError::bad_field(field.clone(), format!("{field}: {msg}")),
        None => ApiError::bad_request(format!("invalid policy: {msg}")),
    }
}

fn cluster(field: &str, id: &str) -> Result<ClusterId, ApiError> {
    ClusterId::new(id).map_err(|e| ApiError::bad_field(field, format!("{field}: {e}")))
}

/// Validates a list of cluster ids; a cluster listed twice is a mistake, not a preference.
fn cluster_list(what: &str, ids: &[String]) -> Result<Vec<ClusterId>, ApiError> {
    let mut seen = BTreeSet::new();
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let field = format!("{what}[{i}]");
            let c = cluster(&field, id)?;
            if !seen.insert(c.clone()) {
                return Err(ApiError::bad_field(
                    field.clone(),
                    format!("{field}: cluster {id} is listed more than once"),
                ));
            }
            Ok(c)
        })
        .collect()
}

/// Validates an allow or deny list; an entry listed twice is a mistake, not a preference.
fn source_list(what: &str, entries: &[String]) -> Result<Vec<SourceMatcher>, ApiError> {
    let mut seen = BTreeSet::new();
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let field = format!("{what}[{i}]");
            let m: SourceMatcher =
                e.parse().map_err(|e| ApiError::bad_field(field.clone(), format!("{field}: {e}")))?;
            if !seen.insert(m.to_string()) {
                return Err(ApiError::bad_field(field.clone(), format!("{field}: {e} is listed more than once")));
            }
            Ok(m)
        })
        .collect()
}

/// Checks a parsed policy: cluster ids are RFC 1123 labels, weights are 0..=100 and sum to 100.
pub fn validate(dto: PolicyDto) -> Result<Policy, ApiError> {
    let mut weights = BTreeMap::new();
    for (k, w) in &dto.weights {
        let field = format!("weights.{k}");
        let id = cluster(&field, k)?;
        let w = u32::try_from(*w)
            .ok()
            .filter(|w| *w <= 100)
            .ok_or_else(|| ApiError::bad_field(field.clone(), format!("{field}: {w} is out of range 0..=100")))?;
        weights.insert(id, w);
    }
    let sum: u32 = weights.values().sum();
    if !weights.is_empty() && sum != 100 {
        return Err(ApiError::bad_field(
            "weights",
            format!("weights: they sum to {sum}; when weights are given they must sum to 100"),
        ));
    }
    Ok(Policy {
        weights,
        failover: cluster_list("failover", &dto.failover)?,
        avoid: cluster_list("avoid", &dto.avoid)?,
        allow: dto.allow.as_deref().map(|a| source_list("allow", a)).transpose()?,
        deny: source_list("deny", &dto.deny)?,
    })
}

/// Where the API's write token comes from. A file is re-read when its modification time or size
/// changes (checked on each write request; writes are rare), so a rotated Secret applies
/// without a restart. An unreadable or empty file disables writes until it is fixed.
#[derive(Debug)]
pub enum WriteToken {
    /// Writes are disabled.
    Off,
    /// A fixed token (tests, or a token handed over by the caller).
    Fixed(Arc<str>),
    /// `api.token_file`, with what was read last.
    File { path: PathBuf, last: Mutex<Option<TokenRead>> },
}

/// A read of the token file: its modification time and size then, and the token it held.
#[derive(Debug)]
pub struct TokenRead {
    stamp: (Option<SystemTime>, u64),
    token: Option<Arc<str>>,
}

impl WriteToken {
    /// The token in `path`, read on first use.
    pub fn file(path: PathBuf) -> Self {
        WriteToken::File { path, last: Mutex::new(None) }
    }

    /// The token writes need now; `None`: writes are disabled.
    pub fn current(&self) -> Option<Arc<str>> {
        let usable = |t: &str| Some(t.trim()).filter(|t| !t.is_empty()).map(Arc::from);
        match self {
            WriteToken::Off => None,
            WriteToken::Fixed(t) => usable(t),
            WriteToken::File { path, last } => {
                let meta = std::fs::metadata(path).ok()?;
                let stamp = (meta.modified().ok(), meta.len());
                let mut last = last.lock().expect("token lock");
                if let Some(read) = last.as_ref()
                    && read.stamp == stamp
                {
                    return read.token.clone();
                }
                let token = match std::fs::read_to_string(path) {
                    Ok(t) => usable(&t),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot read api.token_file; writes are refused until it is readable");
                        None
                    }
                };
                if last.is_some() {
                    tracing::info!(path = %path.display(), "api.token_file changed; the new token applies to writes from now on");
                }
                *last = Some(TokenRead { stamp, token: token.clone() });
                token
            }
        }
    }
}

/// Who a write is from, for the event log: an operator's certificate, or the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// An operator's client certificate (`spiffe://<td>/admin/<name>`).
    Admin(SpiffeId),
    /// The bearer token (whoever holds it).
    Token,
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Writer::Admin(id) => write!(f, "{id}"),
            Writer::Token => f.write_str("the API token"),
        }
    }
}

/// Decides whether a write may go ahead. `client` is the SPIFFE ID of the client certificate
/// the HTTPS server's verifier accepted (our trust domain only), if one was presented:
/// - an operator (`/admin/<name>`) may write, token or not;
/// - any other identity (a gateway, the federator) may not, even with the token: nothing of
///   ours writes to the API, so that is a stolen key at work, not an operator;
/// - without a certificate, the `Authorization: Bearer` header must carry the token, compared
///   in constant time (for equal lengths). With no token configured, it is refused.
pub fn authorize(token: Option<&str>, headers: &HeaderMap, client: Option<&SpiffeId>) -> Result<Writer, ApiError> {
    if let Some(id) = client {
        return match id.role {
            Role::Admin(_) => Ok(Writer::Admin(id.clone())),
            _ => Err(ApiError::status(
                StatusCode::FORBIDDEN,
                format!(
                    "{id} may not write: writes need an operator certificate (spiffe://{}/admin/<name>, \
                     `skybridge ca issue --admin NAME`) or, without a client certificate, the bearer token",
                    id.trust_domain
                ),
            )),
        };
    }
    let Some(token) = token else {
        return Err(ApiError::unauthorized(
            "writes are disabled: no API token is configured (set api.token_file), and no operator certificate was presented",
        ));
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization header; send Authorization: Bearer <token>"))?;
    let given = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be Bearer <token>"))?;
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(Writer::Token)
    } else {
        Err(ApiError::unauthorized("invalid bearer token"))
    }
}

/// As an extractor, listed first in a write handler: the write is authorized before anything
/// of the request is read.
impl FromRequestParts<Ctx> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, ApiError> {
        let client = match parts.extensions.get::<skybridge_api::serve::ClientCertificates>() {
            Some(certs) => Some(
                skybridge_api::tls::client_identity(&certs.0, &ctx.trust_domain)
                    .map_err(|e| ApiError::status(StatusCode::FORBIDDEN, format!("client certificate: {e}")))?,
            ),
            None => None,
        };
        let writer = authorize(ctx.token.current().as_deref(), &parts.headers, client.as_ref())?;
        tracing::info!(by = %writer, method = %parts.method, path = %parts.uri.path(), "API write authorized");
        Ok(writer)
    }
}

#[cfg(test)]
mod tests {
    /// The fuzz seeds (fuzz/seeds/policy_body) are accepted policies, so fuzzing starts from
    /// inputs that reach validation.
    #[test]
    fn the_fuzz_seeds_are_valid_policies() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/policy_body");
        let mut n = 0;
        for f in std::fs::read_dir(dir).unwrap() {
            let path = f.unwrap().path();
            super::parse_policy(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            n += 1;
        }
        assert!(n >= 3);
    }
}
