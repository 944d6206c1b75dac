//! The Skybridge federator: merges catalog sources into one global catalog and serves it.

pub mod catalog;
pub mod core;
pub mod sources;
pub mod state;
pub mod store;
