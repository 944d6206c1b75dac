//! A source built on first use, so that a federator whose cloud credentials are missing at
//! start-up still starts, reports the source as failing (`auth`), and retries with backoff.

use std::future::Future;
use std::pin::Pin;

use skybridge_api::catalog::SourceSnapshot;
use skybridge_api::source::{CatalogSource, SourceError};

type Build<S> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<S, SourceError>> + Send>> + Send>;

/// Builds the inner source on the first `next` (and again after a failed build).
pub struct Deferred<S> {
    kind: &'static str,
    build: Build<S>,
    inner: Option<S>,
}

impl<S: CatalogSource> Deferred<S> {
    /// A source of type `kind` built by `build`.
    pub fn new<F, Fut>(kind: &'static str, build: F) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<S, SourceError>> + Send + 'static,
    {
        Deferred { kind, build: Box::new(move || Box::pin(build())), inner: None }
    }
}

impl<S: CatalogSource> CatalogSource for Deferred<S> {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn next(&mut self) -> Result<SourceSnapshot, SourceError> {
        if self.inner.is_none() {
            self.inner = Some((self.build)().await?);
        }
        match self.inner.as_mut() {
            Some(s) => s.next().await,
            None => unreachable!("built above"),
        }
    }
}
