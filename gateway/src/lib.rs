//! The Skybridge gateway: egress listeners, the QUIC tunnel, ingress delivery and admin.

pub mod admin;
pub mod app;
pub mod config;
pub mod context;
pub mod delivery;
pub mod dns;
pub mod federation;
pub mod listener;
pub mod metrics;
pub mod routing;
pub mod telemetry;
pub mod tls;
pub mod traffic;
pub mod tunnel;
