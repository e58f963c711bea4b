//! Prometheus → OTLP, the parts both Prometheus receivers share, following the OpenTelemetry
//! specification's Prometheus compatibility rules:
//!
//! - `job` and `instance` become the resource attributes `service.name` and `service.instance.id`, never
//!   data point attributes ([`resource_attributes`]); for a scraped target `server.address`,
//!   `server.port` and `url.scheme` are added, and the target's other labels join the resource.
//! - Metric names are kept as written (no `_total` or unit suffix is removed), so a round trip through a
//!   remote-write exporter gives back the same series.
//! - Points of a series that ended (a Prometheus staleness marker, or a series that vanished from a
//!   scrape) carry the `NoRecordedValue` flag and no value ([`stale_point`]).
//! - Metrics without an `otel_scope_name` label are put under outpost's own instrumentation scope
//!   ([`outpost_scope`]).

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{number_data_point, DataPointFlags, NumberDataPoint};

/// The label naming a series' metric.
pub const NAME_LABEL: &str = "__name__";
pub const JOB_LABEL: &str = "job";
pub const INSTANCE_LABEL: &str = "instance";
pub const SCOPE_NAME_LABEL: &str = "otel_scope_name";
pub const SCOPE_VERSION_LABEL: &str = "otel_scope_version";

/// A metric's labels: (name, value) pairs, sorted by name, names unique, no empty values.
pub type Labels = Vec<(String, String)>;

/// `NoRecordedValue`, the flag of a point that marks the end of a series.
pub const NO_RECORDED_VALUE: u32 = DataPointFlags::NoRecordedValueMask as u32;

pub fn string_kv(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

fn int_kv(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
    }
}

/// Labels as data point attributes, in label order.
pub fn attributes<'a>(labels: impl IntoIterator<Item = &'a (String, String)>) -> Vec<KeyValue> {
    labels
        .into_iter()
        .map(|(k, v)| string_kv(k.as_str(), v.as_str()))
        .collect()
}

/// Labels as data point attributes, taking their strings.
pub fn attributes_owned(labels: Labels) -> Vec<KeyValue> {
    labels.into_iter().map(|(k, v)| string_kv(k, v)).collect()
}

/// Where a scraped target was reached, for the `server.*` and `url.scheme` resource attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
}

/// The resource attributes of one job / instance: `service.name`, `service.instance.id`, then (for a
/// scraped target) `server.address`, `server.port`, `url.scheme`, then `extra` (target labels, the
/// labels of `target_info`) in their order. An extra label never overrides the attributes before it.
pub fn resource_attributes(
    job: Option<&str>,
    instance: Option<&str>,
    endpoint: Option<&Endpoint>,
    extra: &[(String, String)],
) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(5 + extra.len());
    if let Some(job) = job.filter(|j| !j.is_empty()) {
        out.push(string_kv("service.name", job));
    }
    if let Some(instance) = instance.filter(|i| !i.is_empty()) {
        out.push(string_kv("service.instance.id", instance));
    }
    if let Some(e) = endpoint {
        out.push(string_kv("server.address", e.host.as_str()));
        if let Some(port) = e.port {
            out.push(int_kv("server.port", i64::from(port)));
        }
        out.push(string_kv("url.scheme", e.scheme.as_str()));
    }
    for (k, v) in extra {
        if k == JOB_LABEL || k == INSTANCE_LABEL || out.iter().any(|kv| kv.key == *k) {
            continue;
        }
        out.push(string_kv(k.as_str(), v.as_str()));
    }
    out
}

/// The scope of metrics that name none: outpost's receiver, with outpost's version.
pub fn outpost_scope(receiver: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: format!("outpost/receiver/{receiver}"),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// Milliseconds since the epoch (Prometheus's time unit) → nanoseconds (OTLP's). Times before the
/// epoch are clamped to it: OTLP times are unsigned.
pub fn ms_to_ns(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

/// A number point with a value.
pub fn double_point(
    attributes: Vec<KeyValue>,
    start_ns: u64,
    time_ns: u64,
    value: f64,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start_ns,
        time_unix_nano: time_ns,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

/// A number point marking the end of its series: the `NoRecordedValue` flag and no value.
pub fn stale_point(attributes: Vec<KeyValue>, start_ns: u64, time_ns: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start_ns,
        time_unix_nano: time_ns,
        value: None,
        flags: NO_RECORDED_VALUE,
        ..Default::default()
    }
}

/// Splits `labels` (sorted) into the scope they name (`otel_scope_name`, `otel_scope_version`) and the
/// rest. `None` when no scope is named.
pub fn take_scope(labels: &mut Labels) -> Option<(String, String)> {
    let name = take_label(labels, SCOPE_NAME_LABEL)?;
    let version = take_label(labels, SCOPE_VERSION_LABEL).unwrap_or_default();
    Some((name, version))
}

/// Removes and returns the value of label `name`.
pub fn take_label(labels: &mut Labels, name: &str) -> Option<String> {
    let i = labels.iter().position(|(k, _)| k == name)?;
    Some(labels.remove(i).1)
}

pub fn label<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(kvs: &[KeyValue]) -> Vec<&str> {
        kvs.iter().map(|kv| kv.key.as_str()).collect()
    }

    #[test]
    fn job_and_instance_name_the_service_and_never_repeat() {
        let endpoint = Endpoint {
            scheme: "http".into(),
            host: "10.0.0.7".into(),
            port: Some(9100),
        };
        let extra = vec![
            ("env".to_string(), "prod".to_string()),
            ("job".to_string(), "ignored".to_string()),
            ("service.name".to_string(), "not over the job".to_string()),
        ];
        let attrs =
            resource_attributes(Some("node"), Some("10.0.0.7:9100"), Some(&endpoint), &extra);
        assert_eq!(
            keys(&attrs),
            vec![
                "service.name",
                "service.instance.id",
                "server.address",
                "server.port",
                "url.scheme",
                "env"
            ]
        );
        assert_eq!(attrs[0], string_kv("service.name", "node"));
        assert_eq!(attrs[3], int_kv("server.port", 9100));
    }

    #[test]
    fn scope_labels_leave_the_point() {
        let mut labels: Labels = vec![
            ("a".into(), "1".into()),
            ("otel_scope_name".into(), "lib".into()),
            ("otel_scope_version".into(), "2.0".into()),
        ];
        assert_eq!(
            take_scope(&mut labels),
            Some(("lib".to_string(), "2.0".to_string()))
        );
        assert_eq!(labels, vec![("a".to_string(), "1".to_string())]);
        assert_eq!(take_scope(&mut labels), None);
    }

    #[test]
    fn stale_points_carry_the_flag_and_no_value() {
        let p = stale_point(vec![], 1, 2);
        assert_eq!(p.flags & NO_RECORDED_VALUE, 1);
        assert_eq!(p.value, None);
        assert_eq!(ms_to_ns(-5), 0);
        assert_eq!(ms_to_ns(1_500), 1_500_000_000);
    }
}
