//! Building OTLP log records for the receivers that make them from text (`filelog`, `syslog`): values,
//! attributes, and the request that carries a batch of records.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use outpost_pipelines::Logs;

/// The attribute a record carries when a parser could not read it (the record is kept as it was).
pub const PARSE_ERROR_ATTRIBUTE: &str = "log.parse_error";

pub fn string(s: impl Into<String>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    }
}

pub fn int(i: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(i)),
    }
}

pub fn kvlist(values: Vec<KeyValue>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList { values })),
    }
}

pub fn kv(key: impl Into<String>, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

/// Sets `key` in `attrs`, replacing an existing value of that key.
pub fn set(attrs: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(existing) => existing.value = Some(value),
        None => attrs.push(kv(key, value)),
    }
}

pub fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One export request holding `records` under one (empty) resource and scope: what a receiver reading
/// text produces. The resource processor adds the node's identity downstream.
pub fn request(records: Vec<LogRecord>) -> Logs {
    Logs {
        resource_logs: vec![ResourceLogs {
            resource: Some(Default::default()),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The text of a string value, if it is one.
pub fn as_str(v: &AnyValue) -> Option<&str> {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}
