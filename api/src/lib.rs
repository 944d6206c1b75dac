//! The shared contract between Skybridge's parts: catalog names, SPIFFE identities and the
//! tunnel stream header. Nothing here does I/O.

pub mod backoff;
#[cfg(feature = "ca")]
pub mod ca;
pub mod catalog;
pub mod config;
pub mod header;
pub mod identity;
pub mod model;
pub mod proto;
pub mod routing;
#[cfg(feature = "serve")]
pub mod serve;
pub mod source;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tls")]
pub mod tls;
pub mod traffic;
pub mod trust;

/// ALPN protocol id spoken on the gateway-to-gateway tunnel.
pub const TUNNEL_ALPN: &[u8] = b"skybridge/1";
