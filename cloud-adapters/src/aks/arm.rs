//! A small Azure Resource Manager client on the `azure_core` pipeline: bearer tokens from the
//! configured credential, the SDK's retry policy (which honors `Retry-After`), a guard that
//! gives up at once when ARM asks for a wait longer than the call's remaining time, `nextLink`
//! paging, and classification of every failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind as AzKind;
use azure_core::http::headers::{ACCEPT, HeaderName};
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Method, Pipeline, PipelineSendOptions, RawResponse, Request, StatusCode, Url};
use serde::de::DeserializeOwned;
use skybridge_api::source::SourceError;

use super::config::AksConfig;
use super::credential::client_options;
use super::error::{self, SetupError, Target};

/// Pages followed at most for one list; ARM pages hold 10–1000 items, so this only stops a
/// server that keeps returning a `nextLink`.
const MAX_PAGES: usize = 1000;

/// An ARM list page.
#[derive(Debug, serde::Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(default, rename = "nextLink")]
    next_link: Option<String>,
}

/// When the current call must be finished, carried in the pipeline [`Context`].
#[derive(Debug, Clone, Copy)]
struct Deadline(Instant);

/// Per-try policy: a 429 or 503 whose `Retry-After` reaches past the call's deadline becomes
/// an error at once, so the source reports `Throttled` instead of sleeping into a timeout.
#[derive(Debug)]
struct ThrottleGuard;

#[async_trait::async_trait]
impl Policy for ThrottleGuard {
    // azure_core's trait elides Context's lifetime; naming it here would not match the trait.
    #[allow(elided_lifetimes_in_paths)]
    async fn send(&self, ctx: &Context, request: &mut Request, next: &[Arc<dyn Policy>]) -> PolicyResult {
        let response = next[0].send(ctx, request, &next[1..]).await?;
        let status = response.status();
        if status != StatusCode::TooManyRequests && status != StatusCode::ServiceUnavailable {
            return Ok(response);
        }
        let wait = error::retry_after(response.headers());
        let deadline = ctx.value::<Deadline>().map(|d| d.0);
        match (wait, deadline) {
            (Some(wait), Some(deadline)) if Instant::now() + wait >= deadline => {
                let raw = response.try_into_raw_response().await?;
                Err(azure_core::Error::with_message(
                    AzKind::HttpResponse { status, error_code: None, raw_response: Some(Box::new(raw)) },
                    format!("ARM asked to wait {}s, past this call's deadline", wait.as_secs()),
                ))
            }
            _ => Ok(response),
        }
    }
}

/// The ARM client of one source.
#[derive(Debug, Clone)]
pub(crate) struct Arm {
    pipeline: Pipeline,
    base: Url,
    timeout: Duration,
    credential_kind: &'static str,
}

impl Arm {
    /// A client for `cfg.arm_endpoint`, authenticating with `credential` for
    /// `{arm_endpoint}/.default`.
    pub(super) fn new(
        cfg: &AksConfig,
        credential: Arc<dyn TokenCredential>,
        http: &reqwest::Client,
    ) -> Result<Self, SetupError> {
        let endpoint = cfg.arm_endpoint.trim_end_matches('/');
        let base = Url::parse(endpoint)
            .map_err(|e| SetupError::Url { url: cfg.arm_endpoint.clone(), reason: e.to_string() })?;
        let scope = format!("{endpoint}/.default");
        let bearer: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(credential, [scope]));
        // Bearer per try (a retry after a refresh carries the new token), then the guard, which
        // must see responses before the retry policy sleeps on them.
        let per_try: Vec<Arc<dyn Policy>> = vec![bearer, Arc::new(ThrottleGuard)];
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            client_options(cfg, http),
            Vec::new(),
            per_try,
            None,
        );
        Ok(Arm { pipeline, base, timeout: cfg.timeout, credential_kind: cfg.credential.kind() })
    }

    /// `{arm_endpoint}{path}?api-version={v}`; `path` is an ARM resource path or id.
    pub(super) fn url(&self, path: &str, api_version: &str) -> Url {
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}{path}"));
        url.query_pairs_mut().clear().append_pair("api-version", api_version);
        url
    }

    /// One request, within the call timeout; the raw response whatever its status.
    async fn send(&self, method: Method, url: Url, t: &Target<'_>) -> Result<RawResponse, SourceError> {
        let mut req = Request::new(url, method);
        req.insert_header(ACCEPT, "application/json");
        if method == Method::Post {
            // A body of known length: an empty POST can leave without Content-Length, which
            // ARM and some proxies answer with 411.
            req.insert_header(HeaderName::from_static("content-type"), "application/json");
            req.set_body("{}");
        }
        let ctx = Context::new().with_value(Deadline(Instant::now() + self.timeout));
        let opts = PipelineSendOptions { skip_checks: true, ..PipelineSendOptions::default() };
        let sent = tokio::time::timeout(self.timeout, self.pipeline.send(&ctx, &mut req, Some(opts))).await;
        match sent {
            Err(_) => Err(error::timed_out(t, self.timeout)),
            Ok(Err(e)) => Err(error::from_azure(&e, t, self.credential_kind)),
            Ok(Ok(resp)) if resp.status().is_success() => Ok(resp),
            Ok(Ok(resp)) => Err(error::from_response(resp.status(), resp.headers(), resp.body(), t)),
        }
    }

    /// `GET url` decoded as `T`.
    pub(super) async fn get<T: DeserializeOwned>(&self, url: Url, t: &Target<'_>) -> Result<T, SourceError> {
        let resp = self.send(Method::Get, url, t).await?;
        serde_json::from_slice(resp.body()).map_err(|e| error::malformed(t, e))
    }

    /// `POST url` (an ARM action) decoded as `T`.
    pub(super) async fn post<T: DeserializeOwned>(&self, url: Url, t: &Target<'_>) -> Result<T, SourceError> {
        let resp = self.send(Method::Post, url, t).await?;
        serde_json::from_slice(resp.body()).map_err(|e| error::malformed(t, e))
    }

    /// Every item of a list, following `nextLink`. A `nextLink` must stay on the ARM host: the
    /// bearer token goes wherever it points.
    pub(super) async fn list<T: DeserializeOwned>(&self, first: Url, t: &Target<'_>) -> Result<Vec<T>, SourceError> {
        let mut items = Vec::new();
        let mut url = first;
        for _ in 0..MAX_PAGES {
            let page: Page<T> = self.get(url.clone(), t).await?;
            items.extend(page.value);
            let Some(next) = page.next_link.filter(|s| !s.is_empty()) else { return Ok(items) };
            let next_url = Url::parse(&next).map_err(|e| error::malformed(t, format!("nextLink {next:?}: {e}")))?;
            if next_url.origin() != self.base.origin() {
                return Err(error::malformed(t, format!("nextLink {next:?} leaves {}", self.base)));
            }
            if next_url == url {
                return Err(error::malformed(t, format!("nextLink {next:?} repeats the page it came with")));
            }
            url = next_url;
        }
        Err(error::malformed(t, format!("more than {MAX_PAGES} pages")))
    }
}
