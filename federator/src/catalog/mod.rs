//! The global catalog: merging source snapshots (pure). The model, deltas and digests are the
//! shared contract in `skybridge_api::catalog`.

pub mod conflicts;
pub mod guard;
mod merge;

pub use merge::{MergeConfig, SourceInput, merge, share_endpoints};
