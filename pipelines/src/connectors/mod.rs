//! Summarizing connectors: `spanmetrics` (spans → request counts and duration histograms) and `count`
//! (spans, data points, log records → counts). Both are pure aggregators: the collector feeds them every
//! record of their upstream pipeline's queue and, every flush interval, admits what [`Summarizer::flush`]
//! produced into the metrics pipelines that list the connector as a receiver. Because they read the
//! upstream queue, which holds everything the upstream processors let through, a config that places
//! them before `tail_sampling` (on a pipeline that forwards to a sampled one) summarizes 100% of spans.

pub mod count;
pub mod spanmetrics;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};

use crate::signal::Metrics;

/// An aggregating connector over input signal `T`.
pub trait Summarizer<T>: Send {
    /// Adds one payload to the aggregation.
    fn consume(&mut self, data: &T);
    /// The metrics aggregated so far, stamped `now_unix_nano`; delta state is reset.
    fn flush(&mut self, now_unix_nano: u64) -> Metrics;
    /// Items that went to an overflow series since the last call (cardinality limit reached).
    fn take_overflow(&mut self) -> u64 {
        0
    }
}

pub(crate) fn str_kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

pub(crate) fn find_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// A stable byte key for a list of attribute values (prost encoding), for grouping.
pub(crate) fn key_of(attrs: &[KeyValue]) -> Vec<u8> {
    use prost::Message;
    let mut out = Vec::new();
    for kv in attrs {
        kv.encode_length_delimited(&mut out)
            .expect("a Vec grows as needed");
    }
    out
}

pub fn unix_nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
