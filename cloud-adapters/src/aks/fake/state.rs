//! The fake's data and request handling, without I/O: ARM resources, issued tokens, injected
//! faults, and the request log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// `Microsoft.ContainerService/fleets` versions the fake accepts (GA ones of the REST reference).
pub const FLEET_API_VERSIONS: &[&str] = &["2023-10-15", "2024-04-01", "2025-03-01"];
/// `Microsoft.ContainerService/managedClusters` versions the fake accepts.
pub const AKS_API_VERSIONS: &[&str] = &["2024-09-01", "2025-01-01", "2025-07-01", "2025-10-01"];

/// A managedCluster served by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCluster {
    /// Resource group holding it.
    pub resource_group: String,
    /// Resource name.
    pub name: String,
    /// Azure location.
    pub location: String,
    /// `properties.fqdn`.
    pub fqdn: Option<String>,
    /// `properties.privateFQDN`.
    pub private_fqdn: Option<String>,
    /// The CA placed in the user kubeconfig (`None`: no `certificate-authority-data`).
    pub ca_pem: Option<String>,
    /// `properties.powerState.code`.
    pub power_state: String,
    /// The API server port in the kubeconfig (AKS: 443); tests point it at a local server.
    pub port: u16,
}

impl FakeCluster {
    /// A running public cluster `name` in `resource_group` at `location`, with a made-up CA.
    pub fn new(resource_group: &str, name: &str, location: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        let body = base64::engine::general_purpose::STANDARD.encode(format!("fake CA of {name}"));
        FakeCluster {
            resource_group: resource_group.into(),
            name: name.into(),
            location: location.into(),
            fqdn: Some(format!("{lower}-dns-1a2b3c.hcp.{location}.azmk8s.io")),
            private_fqdn: None,
            ca_pem: Some(format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")),
            power_state: "Running".into(),
            port: 443,
        }
    }
}

/// A failure the next matching requests get instead of their answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 `TooManyRequests` with `Retry-After: secs`.
    Throttle { retry_after_secs: u64 },
    /// This status with an ARM error body (500, 503, 403, ...).
    Status(u16),
    /// 200 with a body that is not JSON.
    Malformed,
}

/// An injected fault and which requests it hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// The fault.
    pub fault: Fault,
    /// Requests whose path contains this (case-insensitive) are hit; `""` hits every ARM
    /// request. The token endpoint is only hit when this names it (`"oauth2"`).
    pub path_contains: String,
    /// How many requests it hits.
    pub times: usize,
}

impl Injection {
    /// `fault` for the next `times` ARM requests.
    pub fn arm(fault: Fault, times: usize) -> Self {
        Injection { fault, path_contains: String::new(), times }
    }
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`.
    pub method: String,
    /// Path as sent.
    pub path: String,
    /// Query string as sent (without `?`).
    pub query: String,
    /// The bearer token, if any.
    pub token: Option<String>,
}

/// A request as the handler sees it.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

/// What the handler answers.
#[derive(Debug, Clone)]
pub struct FakeResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

fn json_response(status: u16, body: Value) -> FakeResponse {
    FakeResponse { status, headers: Vec::new(), body: body.to_string() }
}

/// Microsoft identity platform's error body: `AADSTS{code}: ...` in `error_description`.
fn aad_error(status: u16, error: &str, code: u32, description: &str) -> FakeResponse {
    json_response(
        status,
        json!({"error": error, "error_description": format!("AADSTS{code}: {description}"), "error_codes": [code]}),
    )
}

fn arm_error(status: u16, code: &str, message: impl Into<String>) -> FakeResponse {
    json_response(status, json!({"error": {"code": code, "message": message.into()}}))
}

#[derive(Debug, Clone)]
struct IssuedToken {
    scope: String,
    expires: Instant,
}

/// Everything the fake knows.
#[derive(Debug)]
pub struct ArmState {
    /// `https://127.0.0.1:PORT`.
    pub base_url: String,
    /// The one subscription served.
    pub subscription: String,
    /// The tenant whose token endpoint is served.
    pub tenant: String,
    /// The service principal accepted by the token endpoint.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// The client assertion (projected service-account token) the app's federated credential
    /// accepts; `None`: no federated credential, client assertions are rejected.
    pub federated_assertion: Option<String>,
    /// `expires_in` of issued tokens, seconds.
    pub token_ttl: u64,
    /// Items per list page.
    pub page_size: usize,
    resource_groups: BTreeMap<String, String>,
    /// (rg lower, fleet lower) → (fleet name, member name → cluster resource id).
    fleets: BTreeMap<(String, String), (String, BTreeMap<String, String>)>,
    /// (rg lower, name lower) → cluster.
    clusters: BTreeMap<(String, String), FakeCluster>,
    tokens: HashMap<String, IssuedToken>,
    issued: Vec<String>,
    injections: VecDeque<Injection>,
    requests: Vec<RecordedRequest>,
}

impl ArmState {
    /// An empty subscription.
    pub fn new(base_url: String, subscription: &str, tenant: &str, client_id: &str, client_secret: &str) -> Self {
        ArmState {
            base_url,
            subscription: subscription.into(),
            tenant: tenant.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            federated_assertion: None,
            token_ttl: 3600,
            page_size: 100,
            resource_groups: BTreeMap::new(),
            fleets: BTreeMap::new(),
            clusters: BTreeMap::new(),
            tokens: HashMap::new(),
            issued: Vec::new(),
            injections: VecDeque::new(),
            requests: Vec::new(),
        }
    }

    /// The ARM id of cluster `name` in `rg`.
    pub fn cluster_id(&self, rg: &str, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/{name}",
            self.subscription
        )
    }

    /// Creates a resource group (idempotent).
    pub fn add_resource_group(&mut self, rg: &str) {
        self.resource_groups.entry(rg.to_ascii_lowercase()).or_insert_with(|| rg.to_owned());
    }

    /// Creates an empty fleet (and its resource group).
    pub fn add_fleet(&mut self, rg: &str, fleet: &str) {
        self.add_resource_group(rg);
        self.fleets
            .entry((rg.to_ascii_lowercase(), fleet.to_ascii_lowercase()))
            .or_insert_with(|| (fleet.to_owned(), BTreeMap::new()));
    }

    /// Creates or replaces a cluster (and its resource group); returns its id.
    pub fn put_cluster(&mut self, c: FakeCluster) -> String {
        self.add_resource_group(&c.resource_group);
        let id = self.cluster_id(&c.resource_group, &c.name);
        self.clusters.insert((c.resource_group.to_ascii_lowercase(), c.name.to_ascii_lowercase()), c);
        id
    }

    /// Deletes a cluster; fleet members pointing at it stay (as in Azure).
    pub fn remove_cluster(&mut self, rg: &str, name: &str) -> bool {
        self.clusters.remove(&(rg.to_ascii_lowercase(), name.to_ascii_lowercase())).is_some()
    }

    /// Adds or replaces member `member` of `fleet` pointing at `cluster_resource_id`.
    pub fn put_member(&mut self, rg: &str, fleet: &str, member: &str, cluster_resource_id: &str) {
        self.add_fleet(rg, fleet);
        if let Some((_, members)) = self.fleets.get_mut(&(rg.to_ascii_lowercase(), fleet.to_ascii_lowercase())) {
            members.insert(member.to_owned(), cluster_resource_id.to_owned());
        }
    }

    /// Removes a member; `false` if it was not there.
    pub fn remove_member(&mut self, rg: &str, fleet: &str, member: &str) -> bool {
        self.fleets
            .get_mut(&(rg.to_ascii_lowercase(), fleet.to_ascii_lowercase()))
            .is_some_and(|(_, m)| m.remove(member).is_some())
    }

    /// Queues an injected fault.
    pub fn inject(&mut self, i: Injection) {
        self.injections.push_back(i);
    }

    /// Makes every issued token invalid (`ExpiredAuthenticationToken`).
    pub fn expire_tokens(&mut self) {
        let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap_or_else(Instant::now);
        for t in self.tokens.values_mut() {
            t.expires = past;
        }
    }

    /// Scopes of the tokens issued so far, in order.
    pub fn issued_scopes(&self) -> Vec<String> {
        self.issued.clone()
    }

    /// The access tokens issued for `scope` so far, in order.
    pub fn tokens_for(&self, scope: &str) -> Vec<String> {
        // Tokens are numbered in issue order: fake-aad-token-{position in `issued` + 1}.
        let numbered = self.issued.iter().enumerate().filter(|(_, s)| *s == scope);
        numbered.map(|(i, _)| format!("fake-aad-token-{}", i + 1)).collect()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.clone()
    }

    /// Answers one request.
    pub fn handle(&mut self, req: FakeRequest) -> FakeResponse {
        let token = req.authorization.as_deref().and_then(|a| a.strip_prefix("Bearer ")).map(str::to_owned);
        self.requests.push(RecordedRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            token: token.clone(),
        });
        let is_token_endpoint = req.path.ends_with("/oauth2/v2.0/token");
        if let Some(resp) = self.injected(&req.path, is_token_endpoint) {
            return resp;
        }
        if is_token_endpoint {
            return self.token_endpoint(&req);
        }
        if let Err(resp) = self.authorize(token.as_deref()) {
            return resp;
        }
        self.arm(&req)
    }

    fn injected(&mut self, path: &str, token_endpoint: bool) -> Option<FakeResponse> {
        let lower = path.to_ascii_lowercase();
        let idx = self.injections.iter().position(|i| {
            let hits = lower.contains(&i.path_contains.to_ascii_lowercase());
            let wanted = !token_endpoint || i.path_contains.contains("oauth2");
            hits && wanted && i.times > 0
        })?;
        let fault = self.injections[idx].fault.clone();
        self.injections[idx].times -= 1;
        if self.injections[idx].times == 0 {
            self.injections.remove(idx);
        }
        Some(match fault {
            Fault::Throttle { retry_after_secs } => {
                let mut r = arm_error(
                    429,
                    "TooManyRequests",
                    "The request is being throttled as the limit has been reached for operation type - Read_ObservationWindow_00:05:00.",
                );
                r.headers.push(("retry-after", retry_after_secs.to_string()));
                r
            }
            Fault::Status(403) => arm_error(
                403,
                "AuthorizationFailed",
                format!(
                    "The client '{}' does not have authorization to perform action over scope '{path}' or the scope is invalid.",
                    self.client_id
                ),
            ),
            Fault::Status(s) if s >= 500 => arm_error(
                s,
                "InternalServerError",
                "Encountered internal server error. Diagnostic information: timestamp '', tracking id ''.",
            ),
            Fault::Status(s) => arm_error(s, "InjectedFault", "injected by the test"),
            Fault::Malformed => FakeResponse { status: 200, headers: Vec::new(), body: "<html>gateway</html>".into() },
        })
    }

    fn token_endpoint(&mut self, req: &FakeRequest) -> FakeResponse {
        if req.method != "POST" {
            return aad_error(405, "invalid_request", 900561, "The endpoint only accepts POST requests.");
        }
        let tenant = req.path.trim_start_matches('/').split('/').next().unwrap_or_default();
        if !tenant.eq_ignore_ascii_case(&self.tenant) {
            return aad_error(400, "invalid_request", 90002, &format!("Tenant '{tenant}' not found."));
        }
        let form = parse_form(&req.body);
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        if get("grant_type") != "client_credentials" {
            return aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.");
        }
        if get("client_id") != self.client_id {
            return aad_error(400, "unauthorized_client", 700016, "Application not found in the directory.");
        }
        if let Err(resp) = self.client_authentication(&form) {
            return resp;
        }
        let scope = get("scope").to_owned();
        if !scope.ends_with("/.default") || scope.contains(' ') {
            return aad_error(400, "invalid_scope", 1002012, "The provided value for scope is not valid.");
        }
        let n = self.issued.len() + 1;
        let access_token = format!("fake-aad-token-{n}");
        let expires = Instant::now() + Duration::from_secs(self.token_ttl);
        self.tokens.insert(access_token.clone(), IssuedToken { scope: scope.clone(), expires });
        self.issued.push(scope);
        json_response(
            200,
            json!({"token_type": "Bearer", "expires_in": self.token_ttl, "ext_expires_in": self.token_ttl, "access_token": access_token}),
        )
    }

    /// Checks the client's proof: a secret, or a client assertion matching the federated
    /// credential (workload identity), as Microsoft identity platform's client-credentials
    /// grant takes either.
    fn client_authentication(&self, form: &HashMap<String, String>) -> Result<(), FakeResponse> {
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        let (secret, assertion, assertion_type) =
            (get("client_secret"), get("client_assertion"), get("client_assertion_type"));
        match (secret.is_empty(), assertion.is_empty()) {
            (true, true) => Err(aad_error(
                400,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )),
            (false, false) => Err(aad_error(
                400,
                "invalid_request",
                90015,
                "Requested query string is too long or contains both client_secret and client_assertion.",
            )),
            (false, true) if secret != self.client_secret => {
                Err(aad_error(401, "invalid_client", 7000215, "Invalid client secret provided."))
            }
            (false, true) => Ok(()),
            (true, false) if assertion_type != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" => {
                Err(aad_error(400, "invalid_request", 50027, "Invalid client_assertion_type."))
            }
            (true, false) if assertion.split('.').count() != 3 => {
                Err(aad_error(401, "invalid_client", 50027, "JWT token is invalid or malformed."))
            }
            (true, false) if self.federated_assertion.as_deref() != Some(assertion) => Err(aad_error(
                401,
                "invalid_client",
                700211,
                &format!(
                    "No matching federated identity record found for presented assertion issuer. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. Application: '{}'.",
                    self.client_id
                ),
            )),
            (true, false) => Ok(()),
        }
    }

    fn authorize(&self, token: Option<&str>) -> Result<(), FakeResponse> {
        let unauthorized = |code: &str, message: &str| {
            let mut r = arm_error(401, code, message);
            r.headers.push((
                "www-authenticate",
                format!("Bearer authorization_uri=\"{}/{}\", error=\"invalid_token\"", self.base_url, self.tenant),
            ));
            r
        };
        let Some(token) = token else {
            return Err(unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ));
        };
        let Some(issued) = self.tokens.get(token) else {
            return Err(unauthorized("InvalidAuthenticationToken", "The access token is invalid."));
        };
        if issued.expires <= Instant::now() {
            return Err(unauthorized(
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            ));
        }
        let audience = format!("{}/.default", self.base_url);
        if issued.scope != audience {
            return Err(unauthorized(
                "InvalidAuthenticationTokenAudience",
                &format!("The access token has been obtained for wrong audience or resource '{}'.", issued.scope),
            ));
        }
        Ok(())
    }

    fn arm(&self, req: &FakeRequest) -> FakeResponse {
        let params = parse_form(req.query.as_bytes());
        let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let provider_ok = segs.len() >= 7
            && eq(segs[0], "subscriptions")
            && eq(segs[2], "resourceGroups")
            && eq(segs[4], "providers")
            && eq(segs[5], "Microsoft.ContainerService");
        if !provider_ok {
            return arm_error(404, "NotFound", format!("No route for {} {}", req.method, req.path));
        }
        let versions = if eq(segs[6], "fleets") { FLEET_API_VERSIONS } else { AKS_API_VERSIONS };
        match params.get("api-version") {
            None => {
                return arm_error(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                );
            }
            Some(v) if !versions.contains(&v.as_str()) => {
                return arm_error(
                    400,
                    "InvalidApiVersionParameter",
                    format!("The api-version '{v}' is invalid. The supported versions are '{}'.", versions.join(",")),
                );
            }
            Some(_) => {}
        }
        if !eq(segs[1], &self.subscription) {
            return arm_error(
                404,
                "SubscriptionNotFound",
                format!("The subscription '{}' could not be found.", segs[1]),
            );
        }
        let rg = segs[3].to_ascii_lowercase();
        if !self.resource_groups.contains_key(&rg) {
            return arm_error(
                404,
                "ResourceGroupNotFound",
                format!("Resource group '{}' could not be found.", segs[3]),
            );
        }
        let skip: usize = params.get("$skipToken").and_then(|s| s.parse().ok()).unwrap_or(0);
        match (req.method.as_str(), &segs[6..]) {
            ("GET", [f, fleet, m]) if eq(f, "fleets") && eq(m, "members") => {
                let Some((fname, members)) = self.fleets.get(&(rg.clone(), fleet.to_ascii_lowercase())) else {
                    return not_found("fleets", fleet, segs[3]);
                };
                let items: Vec<Value> = members
                    .iter()
                    .map(|(name, cluster)| {
                        json!({
                            "id": format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerService/fleets/{fname}/members/{name}", self.subscription, segs[3]),
                            "name": name,
                            "type": "Microsoft.ContainerService/fleets/members",
                            "etag": "\"0000a1b2-0000-0100-0000-000000000000\"",
                            "properties": {"clusterResourceId": cluster, "provisioningState": "Succeeded"}
                        })
                    })
                    .collect();
                self.page(req, items, skip, &params)
            }
            ("GET", [m]) if eq(m, "managedClusters") => {
                let items: Vec<Value> =
                    self.clusters.iter().filter(|((r, _), _)| *r == rg).map(|(_, c)| self.cluster_json(c)).collect();
                self.page(req, items, skip, &params)
            }
            ("GET", [m, name]) if eq(m, "managedClusters") => match self.clusters.get(&(rg, name.to_ascii_lowercase()))
            {
                Some(c) => json_response(200, self.cluster_json(c)),
                None => not_found("managedClusters", name, segs[3]),
            },
            ("POST", [m, name, action]) if eq(m, "managedClusters") && eq(action, "listClusterUserCredential") => {
                match self.clusters.get(&(rg, name.to_ascii_lowercase())) {
                    Some(c) => json_response(
                        200,
                        json!({"kubeconfigs": [{"name": "clusterUser", "value": kubeconfig_b64(c)}]}),
                    ),
                    None => not_found("managedClusters", name, segs[3]),
                }
            }
            _ => arm_error(404, "NotFound", format!("No route for {} {}", req.method, req.path)),
        }
    }

    fn page(
        &self,
        req: &FakeRequest,
        items: Vec<Value>,
        skip: usize,
        params: &HashMap<String, String>,
    ) -> FakeResponse {
        let size = self.page_size.max(1);
        let value: Vec<Value> = items.iter().skip(skip).take(size).cloned().collect();
        let mut body = json!({ "value": value });
        if skip + size < items.len() {
            let v = params.get("api-version").cloned().unwrap_or_default();
            body["nextLink"] =
                json!(format!("{}{}?api-version={v}&$skipToken={}", self.base_url, req.path, skip + size));
        }
        json_response(200, body)
    }

    fn cluster_json(&self, c: &FakeCluster) -> Value {
        json!({
            "id": self.cluster_id(&c.resource_group, &c.name),
            "location": c.location,
            "name": c.name,
            "type": "Microsoft.ContainerService/ManagedClusters",
            "properties": {
                "provisioningState": "Succeeded",
                "powerState": {"code": c.power_state},
                "kubernetesVersion": "1.33.2",
                "dnsPrefix": format!("{}-dns", c.name),
                "fqdn": c.fqdn,
                "privateFQDN": c.private_fqdn,
                "aadProfile": {"managed": true, "enableAzureRBAC": true},
                "apiServerAccessProfile": {"enablePrivateCluster": c.private_fqdn.is_some() && c.fqdn.is_none()}
            }
        })
    }
}

fn not_found(kind: &str, name: &str, rg: &str) -> FakeResponse {
    arm_error(
        404,
        "ResourceNotFound",
        format!("The Resource 'Microsoft.ContainerService/{kind}/{name}' under resource group '{rg}' was not found."),
    )
}

/// The user kubeconfig AKS returns, base64 as in `kubeconfigs[].value`.
fn kubeconfig_b64(c: &FakeCluster) -> String {
    let host = c.fqdn.clone().or_else(|| c.private_fqdn.clone()).unwrap_or_default();
    let ca = c
        .ca_pem
        .as_ref()
        .map(|pem| {
            format!("    certificate-authority-data: {}\n", base64::engine::general_purpose::STANDARD.encode(pem))
        })
        .unwrap_or_default();
    let user = format!("clusterUser_{}_{}", c.resource_group, c.name);
    let text = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n{ca}    server: https://{host}:{port}\n  name: {name}\ncontexts:\n- context:\n    cluster: {name}\n    user: {user}\n  name: {name}\ncurrent-context: {name}\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      args:\n      - get-token\n      - --server-id\n      - 6dae42f8-4368-4678-94ff-3960e28e3630\n      command: kubelogin\n",
        name = c.name,
        port = c.port
    );
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `application/x-www-form-urlencoded` pairs (also used for query strings).
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    // Url does the percent- and plus-decoding; the host is a placeholder.
    match azure_core::http::Url::parse(&format!("http://form.invalid/?{text}")) {
        Ok(u) => u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
        Err(_) => HashMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_request(body: &str) -> FakeRequest {
        FakeRequest {
            method: "POST".into(),
            path: "/tenant-1/oauth2/v2.0/token".into(),
            query: String::new(),
            authorization: None,
            body: body.as_bytes().to_vec(),
        }
    }

    fn aadsts(r: &FakeResponse) -> (u16, String) {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        (r.status, v["error_description"].as_str().unwrap_or_default().split(':').next().unwrap_or_default().into())
    }

    #[test]
    fn client_assertions_are_checked_like_a_federated_credential() {
        let mut s = ArmState::new("https://127.0.0.1:1".into(), "sub", "tenant-1", "app-1", "secret-1");
        s.federated_assertion = Some("h.p.s".into());
        let base = "grant_type=client_credentials&client_id=app-1&scope=x%2F.default";
        let jwt = "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
        let ok = s.handle(token_request(&format!("{base}&{jwt}&client_assertion=h.p.s")));
        assert_eq!(ok.status, 200, "{}", ok.body);
        let cases = [
            (format!("{base}&{jwt}&client_assertion=h.p.other"), (401, "AADSTS700211")),
            (format!("{base}&{jwt}&client_assertion=not-a-jwt"), (401, "AADSTS50027")),
            (format!("{base}&client_assertion_type=bearer&client_assertion=h.p.s"), (400, "AADSTS50027")),
            (format!("{base}&{jwt}&client_assertion=h.p.s&client_secret=secret-1"), (400, "AADSTS90015")),
            (base.to_owned(), (400, "AADSTS7000218")),
        ];
        for (body, want) in cases {
            let r = s.handle(token_request(&body));
            assert_eq!(aadsts(&r), (want.0, want.1.to_owned()), "{body}");
        }
        s.federated_assertion = None;
        let r = s.handle(token_request(&format!("{base}&{jwt}&client_assertion=h.p.s")));
        assert_eq!(aadsts(&r), (401, "AADSTS700211".to_owned()));
        assert_eq!(s.tokens_for("x/.default"), ["fake-aad-token-1"]);
    }
}
