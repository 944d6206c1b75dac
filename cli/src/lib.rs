//! The parts of the `skybridge` command that tests and benchmarks reuse as a library: the
//! local demo and its WAN emulation.

pub mod demo;
