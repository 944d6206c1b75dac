//! Catalog sources backed by the clouds' own service registries, one module per source, each
//! implementing [`skybridge_api::source::CatalogSource`].

pub mod aks;
pub mod aws;
pub mod deferred;
pub mod fleet;
pub mod gke;
pub mod k8s;
pub mod kubernetes;
