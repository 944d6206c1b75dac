//! Delivery to local endpoints: used by ingress (streams from peers) and by egress when the
//! local cluster hosts the service.

pub mod balancer;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::metrics::Metrics;
use balancer::Ejections;

/// Why no local endpoint could be reached.
#[derive(Debug, thiserror::Error)]
#[error("all {tried} local endpoints failed; last: {last}")]
pub struct DeliveryError {
    pub tried: usize,
    pub last: String,
}

/// Connects to local endpoints with round robin and passive ejection.
pub struct LocalDelivery {
    ejections: Mutex<Ejections>,
    rr: AtomicUsize,
    connect_timeout: Duration,
    eject_duration: Duration,
    metrics: Metrics,
}

impl LocalDelivery {
    /// A delivery with the configured timeouts.
    pub fn new(connect_timeout: Duration, eject_duration: Duration, metrics: Metrics) -> Self {
        LocalDelivery {
            ejections: Mutex::new(Ejections::default()),
            rr: AtomicUsize::new(0),
            connect_timeout,
            eject_duration,
            metrics,
        }
    }

    /// Connects to one of `endpoints`, trying each at most once, within `budget`.
    pub async fn connect(
        &self,
        endpoints: &[SocketAddr],
        budget: Duration,
    ) -> Result<(TcpStream, SocketAddr), DeliveryError> {
        let start = Instant::now();
        let order = {
            let mut ej = self.ejections.lock().expect("ejections lock");
            ej.prune(start);
            ej.order(endpoints, self.rr.fetch_add(1, Ordering::Relaxed), start)
        };
        let mut last = String::from("no endpoints");
        let mut tried = 0;
        for ep in order {
            let left = budget.saturating_sub(start.elapsed());
            if left.is_zero() {
                last = format!("connect budget of {budget:?} spent");
                break;
            }
            tried += 1;
            let result = tokio::time::timeout(self.connect_timeout.min(left), TcpStream::connect(ep)).await;
            match result {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    self.ejections.lock().expect("ejections lock").restore(&ep);
                    return Ok((s, ep));
                }
                Ok(Err(e)) => last = format!("{ep}: {e}"),
                Err(_) => last = format!("{ep}: connect timed out after {:?}", self.connect_timeout.min(left)),
            }
            tracing::warn!(endpoint = %ep, error = %last, "local endpoint failed; ejecting");
            self.metrics.endpoint_failures.inc();
            self.ejections.lock().expect("ejections lock").eject(ep, Instant::now(), self.eject_duration);
        }
        Err(DeliveryError { tried, last })
    }
}
