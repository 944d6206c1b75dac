//! The federator client: one control stream, catalog snapshots and deltas in, ACKs and
//! measurement reports out. When the federator is unreachable the gateway keeps routing on the
//! last catalog it had (static stability) and reconnects with jittered backoff.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::Serialize;
use skybridge_api::backoff::Backoff;
use skybridge_api::catalog::{DeltaError, GlobalCatalog, apply_in_place, digest};
use skybridge_api::model::{ClusterId, ServiceKey};
use skybridge_api::proto::{SnapshotAssembler, delta_from_wire, policies_from_wire, snapshot_from_wire, wire};
use skybridge_api::routing::Policy;
use skybridge_api::tls::{CertStore, ServerExpectation};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use wire::{federator_message, gateway_message};

use crate::config::FederatorSection;
use crate::context::Context;
use crate::routing::Catalog;

/// What `/status` shows about the federator connection.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FederationStatus {
    /// `connecting`, `connected` or `disconnected`.
    pub state: String,
    pub address: String,
    /// The catalog version being routed on (0: none from the federator yet).
    pub catalog_version: u64,
    pub last_error: Option<String>,
    pub connects: u64,
}

/// Why a control session ended.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("cannot connect to the federator at {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("federator rejected the session: {0}")]
    Rejected(String),
    #[error("control stream failed: {0}")]
    Stream(String),
    #[error("the federator closed the control stream")]
    Closed,
}

/// The catalog (and gateway list) last received, kept across sessions.
#[derive(Default)]
struct Held {
    catalog: Option<GlobalCatalog>,
    gateways: Vec<wire::Gateway>,
    policies: BTreeMap<ServiceKey, Policy>,
}

/// Runs the client until cancelled.
pub async fn run(
    ctx: Arc<Context>,
    cfg: FederatorSection,
    advertised: Vec<String>,
    certs: Arc<CertStore>,
    status: Arc<Mutex<FederationStatus>>,
    cancel: CancellationToken,
) {
    let tls = match certs.client_config(ServerExpectation::Federator, &[b"h2"]) {
        Ok(c) => tokio_rustls::TlsConnector::from(Arc::new(c)),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the control TLS config; not connecting to the federator");
            return;
        }
    };
    let instance = cfg.instance.clone().or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_else(|| "default".into());
    let mut held = Held::default();
    let backoff = Backoff { min: cfg.reconnect_min, max: cfg.reconnect_max };
    let mut failures = 0u32;
    loop {
        let connects_before = status.lock().expect("federation status lock").connects;
        set(&status, |s| {
            s.state = "connecting".into();
            s.address = cfg.address.clone();
        });
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = session(&ctx, &cfg, &instance, &advertised, &tls, &mut held, &status) => r,
        };
        let connected = status.lock().expect("federation status lock").connects > connects_before;
        let e = match result {
            Ok(()) => FederationError::Closed,
            Err(e) => e,
        };
        ctx.metrics.federator_connected.set(0);
        tracing::warn!(error = %e, "federator session ended; routing on the last catalog");
        set(&status, |s| {
            s.state = "disconnected".into();
            s.last_error = Some(e.to_string());
        });
        // A session that got as far as connecting starts the backoff over.
        failures = if connected { 1 } else { failures + 1 };
        let wait = backoff.jittered(failures, fastrand::f64());
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn set(status: &Mutex<FederationStatus>, f: impl FnOnce(&mut FederationStatus)) {
    f(&mut status.lock().expect("federation status lock"));
}

/// Opens an HTTP/2 channel to the federator over our mTLS (the federator's SPIFFE ID is checked).
pub async fn connect(
    cfg: &FederatorSection,
    tls: &tokio_rustls::TlsConnector,
) -> Result<tonic::transport::Channel, FederationError> {
    let err = |reason: String| FederationError::Connect { address: cfg.address.clone(), reason };
    let (address, tls) = (cfg.address.clone(), tls.clone());
    let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let (address, tls) = (address.clone(), tls.clone());
        async move {
            let tcp = TcpStream::connect(address.as_str()).await?;
            tcp.set_nodelay(true)?;
            // The verifier checks the federator's SPIFFE ID, not this name.
            let name = ServerName::try_from("federator.skybridge").expect("valid name");
            let tls = tls.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    tonic::transport::Endpoint::from_static("http://federator.skybridge")
        .connect_timeout(cfg.connect_timeout)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect_with_connector(connector)
        .await
        .map_err(|e| err(format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default())))
}

async fn session(
    ctx: &Context,
    cfg: &FederatorSection,
    instance: &str,
    advertised: &[String],
    tls: &tokio_rustls::TlsConnector,
    held: &mut Held,
    status: &Mutex<FederationStatus>,
) -> Result<(), FederationError> {
    let channel = connect(cfg, tls).await?;
    let mut client = wire::control_client::ControlClient::new(channel).max_decoding_message_size(cfg.max_message_size);
    let (tx, rx) = mpsc::channel(16);
    let hello = wire::Hello {
        cluster: ctx.local.to_string(),
        cloud: ctx.cloud.to_string(),
        region: ctx.region.clone(),
        tunnel_addresses: advertised.to_vec(),
        version: env!("CARGO_PKG_VERSION").into(),
        instance: instance.to_owned(),
        have_version: held.catalog.as_ref().map_or(0, |c| c.version),
        have_digest: held.catalog.as_ref().map_or(0, |c| c.digest),
    };
    let send = |m: gateway_message::Msg| wire::GatewayMessage { msg: Some(m) };
    tx.send(send(gateway_message::Msg::Hello(hello))).await.map_err(|_| FederationError::Closed)?;
    let mut inbound = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|s| FederationError::Rejected(format!("{:?}: {}", s.code(), s.message())))?
        .into_inner();
    ctx.metrics.federator_connected.set(1);
    set(status, |s| {
        s.state = "connected".into();
        s.connects += 1;
    });
    tracing::info!(address = %cfg.address, "connected to the federator");
    let mut report = tokio::time::interval(cfg.report_interval);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut parts = SnapshotAssembler::default();
    loop {
        tokio::select! {
            msg = inbound.message() => {
                let msg = msg.map_err(|s| FederationError::Stream(format!("{:?}: {}", s.code(), s.message())))?;
                let Some(wire::FederatorMessage { msg: Some(msg) }) = msg else { return Err(FederationError::Closed) };
                // Snapshots may come in parts; act (and ACK) once the last one is here.
                let msg = match msg {
                    federator_message::Msg::Snapshot(part) => match parts.push(part) {
                        Some(whole) => federator_message::Msg::Snapshot(whole),
                        None => continue,
                    },
                    other => other,
                };
                let reply = match on_update(ctx, held, &cfg.peer_addresses, msg) {
                    Ok(version) => {
                        set(status, |s| s.catalog_version = version);
                        gateway_message::Msg::Ack(wire::Ack { version })
                    }
                    Err((version, reason)) => {
                        tracing::warn!(%reason, "catalog update rejected; asking for a snapshot");
                        gateway_message::Msg::Nack(wire::Nack { version, reason })
                    }
                };
                tx.send(send(reply)).await.map_err(|_| FederationError::Closed)?;
            }
            _ = report.tick() => {
                let peers = ctx
                    .pool
                    .paths()
                    .into_iter()
                    .map(|(c, p)| wire::PeerMeasurement {
                        cluster: c.to_string(),
                        rtt_micros: p.health.srtt().map_or(0, |d| d.as_micros() as u64),
                        rank_rtt_micros: p.health.rank_rtt().map_or(0, |d| d.as_micros() as u64),
                        state: p.health.state().as_str().to_owned(),
                    })
                    .collect();
                tx.send(send(gateway_message::Msg::Report(wire::Report { peers }))).await.map_err(|_| FederationError::Closed)?;
            }
        }
    }
}

/// Applies one snapshot or delta; returns the version to ACK, or the version and reason to NACK.
fn on_update(
    ctx: &Context,
    held: &mut Held,
    peer_addresses: &BTreeMap<ClusterId, String>,
    msg: federator_message::Msg,
) -> Result<u64, (u64, String)> {
    let kind = match msg {
        federator_message::Msg::Snapshot(s) => {
            let c = snapshot_from_wire(&s).map_err(|e| (s.version, e.to_string()))?;
            let computed = digest(&c);
            if computed != s.digest {
                return Err((
                    s.version,
                    format!("snapshot digest {computed:#x} differs from the sent {:#x}", s.digest),
                ));
            }
            held.policies = policies_from_wire(&s.policies).map_err(|e| (s.version, e.to_string()))?;
            held.catalog = Some(c);
            held.gateways = s.gateways;
            "snapshot"
        }
        federator_message::Msg::Delta(d) => {
            let delta = delta_from_wire(&d).map_err(|e| (d.to_version, e.to_string()))?;
            // Validated before anything is applied, so a bad list leaves the held state as it was.
            let policies = d
                .policies_changed
                .then(|| policies_from_wire(&d.policies))
                .transpose()
                .map_err(|e| (d.to_version, e.to_string()))?;
            let base =
                held.catalog.as_mut().ok_or((d.to_version, "no valid catalog to apply a delta to".to_owned()))?;
            if let Err(e) = apply_in_place(base, &delta) {
                if matches!(e, DeltaError::DigestMismatch { .. }) {
                    // The catalog now differs from the sender's; routing keeps the last good one
                    // (already installed) until a snapshot replaces it.
                    held.catalog = None;
                }
                return Err((d.to_version, e.to_string()));
            }
            if d.gateways_changed {
                held.gateways = d.gateways;
            }
            if let Some(p) = policies {
                held.policies = p;
            }
            "delta"
        }
    };
    let catalog = held.catalog.as_ref().expect("set above");
    ctx.catalog.store(Catalog::from_global(&ctx.local, catalog, &held.gateways, &held.policies, peer_addresses));
    ctx.metrics.catalog_version.set(catalog.version as i64);
    ctx.metrics.catalog_updates.get_or_create(&crate::metrics::KindLabels { kind }).inc();
    Ok(catalog.version)
}
