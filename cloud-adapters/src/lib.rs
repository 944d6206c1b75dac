//! Catalog sources backed by the clouds' own service registries, one module per source, each
//! implementing [`skybridge_api::source::CatalogSource`].

pub mod aks;
pub mod aws;
pub mod deferred;
pub mod fleet;
pub mod gke;
pub mod k8s;
pub mod kubernetes;
#[cfg(feature = "testing")]
mod testing_tls;

/// An error and its causes on one line: the SDKs put the useful part (a refused connection, an
/// untrusted certificate) in the sources, and some add troubleshooting text on new lines.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
