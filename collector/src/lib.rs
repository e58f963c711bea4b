//! outpost, the binary's library half: receivers, exporters, the topology that wires them to the
//! pipelines, the admin endpoint, and the agent's lifecycle ([`agent`]). Only this crate touches the
//! network.

pub mod admin;
pub mod agent;
pub mod config_test;
pub mod exporters;
pub mod net;
pub mod otlp;
pub mod prom;
pub mod receivers;
pub mod stages;
pub mod tls;
pub mod topology;
