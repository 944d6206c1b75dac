//! The parts of the `skybridge` command that tests and benchmarks reuse as a library: the
//! local demo and its WAN emulation, and the small HTTP client the commands use.

pub mod demo;
pub mod http;
