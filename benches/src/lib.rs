//! Benchmarks and the load generator.
//!
//! [`loadgen`] is the library half of the `loadgen` binary: every benchmark that needs OTLP
//! traffic against outpost calls [`loadgen::run`] instead of shelling out, so the numbers it
//! reports mean the same thing everywhere.

pub mod loadgen;
