//! The Skybridge federator: merges catalog sources into one global catalog and serves it.

pub mod api;
pub mod app;
pub mod catalog;
pub mod config;
pub mod control;
pub mod core;
pub mod dashboard;
pub mod expiry;
pub mod ha;
pub mod leader;
pub mod metrics;
pub mod paths;
pub mod policies;
pub mod sources;
pub mod state;
pub mod store;
pub mod traffic;
