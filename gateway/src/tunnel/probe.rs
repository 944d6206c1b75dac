//! The prober: every `routing.probe_interval`, one probe to every peer of the catalog, all at
//! once, each bounded by `routing.probe_timeout`. Results feed each peer's health (see
//! `skybridge_api::routing::health`); a blackholed peer misses its probes even when no
//! client traffic goes its way.

use std::sync::Arc;

use futures_util::future::join_all;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

/// Probes until `stop` is cancelled or draining starts (a draining gateway takes no new
/// connections, and its peers' answers would only be noise). QUIC's RTT of live connections is
/// sampled on the same tick.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let cfg = &ctx.routing;
    let mut tick = tokio::time::interval(cfg.probe_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ctx.draining.cancelled() => return,
            _ = tick.tick() => {}
        }
        ctx.pool.sample_rtts();
        let catalog = ctx.catalog.load();
        let round = join_all(catalog.peers.values().map(|p| ctx.pool.probe(p, cfg.probe_timeout)));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ctx.draining.cancelled() => return,
            _ = round => {}
        }
    }
}
