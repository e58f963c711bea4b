//! Prometheus on the wire: the remote-write 1.0 protocol ([`remote_write`]), the translation of OTLP
//! metrics into it ([`translate`], with the naming rules in [`names`]), the packing of a translated
//! payload into requests ([`pack`]), and the conversion of scraped or remote-written samples into OTLP
//! ([`to_otlp`]). The protocol types are shared by the `prometheusremotewrite` exporter and the
//! Prometheus receivers, so both speak exactly the same messages.

pub mod names;
pub mod pack;
pub mod remote_write;
pub mod to_otlp;
pub mod translate;
