//! State shared by the listeners, the tunnel and the admin server of one gateway.

use skybridge_api::routing::DefaultAction;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use skybridge_api::model::{Cloud, ClusterId};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{Limits, RoutingSection};
use crate::delivery::LocalDelivery;
use crate::metrics::Metrics;
use crate::routing::Catalog;
use crate::telemetry::Telemetry;
use crate::tls::CertStore;
use crate::tunnel::client::Pool;

/// The current catalog; swapped whole when a new one arrives.
pub struct CatalogHandle(RwLock<Arc<Catalog>>);

impl CatalogHandle {
    /// Wraps an initial catalog.
    pub fn new(c: Catalog) -> Self {
        CatalogHandle(RwLock::new(Arc::new(c)))
    }

    /// The catalog now; cheap (one Arc clone).
    pub fn load(&self) -> Arc<Catalog> {
        self.0.read().expect("catalog lock").clone()
    }

    /// Installs a new catalog; in-flight connections keep the one they started with.
    pub fn store(&self, c: Catalog) {
        *self.0.write().expect("catalog lock") = Arc::new(c);
    }
}

/// Who this gateway is (`[gateway]`).
#[derive(Debug, Clone)]
pub struct Identity {
    pub local: ClusterId,
    pub cloud: Cloud,
    pub region: String,
    pub trust_domain: String,
}

/// The data path's parts, built by `app` before the context exists.
pub struct Parts {
    pub catalog: Catalog,
    pub pool: Pool,
    pub delivery: LocalDelivery,
    pub certs: Arc<CertStore>,
    pub metrics: Metrics,
    pub telemetry: Telemetry,
}

/// Everything the data path needs, passed down as one `Arc`.
pub struct Context {
    pub local: ClusterId,
    pub cloud: Cloud,
    pub region: String,
    pub trust_domain: String,
    pub limits: Limits,
    pub routing: RoutingSection,
    /// What an ingress stream gets for a service whose policy names neither allow nor deny
    /// lists (`[authorization] default`).
    pub authorization: DefaultAction,
    pub catalog: CatalogHandle,
    pub pool: Pool,
    pub delivery: LocalDelivery,
    pub certs: Arc<CertStore>,
    pub metrics: Metrics,
    /// Connection spans (and their export, when configured).
    pub telemetry: Telemetry,
    /// Bounds client connections across all egress listeners.
    pub egress_slots: Arc<Semaphore>,
    /// Bounds concurrent ingress streams from all peers.
    pub ingress_slots: Arc<Semaphore>,
    /// Read-buffer growth shared by every relay.
    pub relay_budget: crate::tunnel::splice::BufferBudget,
    /// The federator connection, when one is configured.
    pub federation: Arc<std::sync::Mutex<crate::federation::FederationStatus>>,
    /// Cancelled when draining starts: accept loops stop, ingress answers `overloaded`.
    pub draining: CancellationToken,
    /// Cancelled when the drain deadline passes: in-flight relays are cut.
    pub force_close: CancellationToken,
    /// Egress traffic per service, destination and transport (metrics and reports).
    pub traffic: std::sync::Mutex<crate::traffic::Traffic>,
    /// When this process started (Unix ms): the traffic counters count from it.
    pub started_at_ms: u64,
    /// The latest reachability proof of each remote service port and hosting cluster.
    pub proofs:
        std::sync::Mutex<std::collections::BTreeMap<crate::tunnel::proof::ProofKey, crate::tunnel::proof::ProofResult>>,
    ready: AtomicBool,
}

impl Context {
    /// Builds the context; not ready until [`Context::set_ready`].
    pub fn new(
        who: Identity,
        limits: Limits,
        routing: RoutingSection,
        authorization: DefaultAction,
        parts: Parts,
    ) -> Self {
        let Identity { local, cloud, region, trust_domain } = who;
        let Parts { catalog, pool, delivery, certs, metrics, telemetry } = parts;
        Context {
            egress_slots: Arc::new(Semaphore::new(limits.max_connections)),
            ingress_slots: Arc::new(Semaphore::new(limits.max_connections)),
            relay_budget: crate::tunnel::splice::BufferBudget::new(limits.relay_buffer_budget),
            traffic: std::sync::Mutex::new(crate::traffic::Traffic::new(limits.traffic_services)),
            started_at_ms: crate::federation::cache::unix_ms(std::time::SystemTime::now()),
            proofs: std::sync::Mutex::default(),
            local,
            cloud,
            region,
            trust_domain,
            limits,
            routing,
            authorization,
            catalog: CatalogHandle::new(catalog),
            pool,
            delivery,
            certs,
            metrics,
            telemetry,
            federation: Arc::default(),
            draining: CancellationToken::new(),
            force_close: CancellationToken::new(),
            ready: AtomicBool::new(false),
        }
    }

    /// Marks listeners bound and certificates loaded.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Ready to take traffic: started and not draining.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.is_cancelled()
    }
}
