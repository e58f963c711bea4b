//! Prometheus on the wire: the remote-write 1.0 protocol ([`remote_write`]). Shared by the
//! `prometheusremotewrite` exporter and the Prometheus receivers, so both speak exactly the same
//! messages.

pub mod remote_write;
pub mod to_otlp;
