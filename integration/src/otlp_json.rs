//! Reading what outpost's `file` exporter wrote: OTLP JSON, one export request per line.
//!
//! Parsing goes through `serde_json::Value`, not through outpost's own types, so the tests check the
//! format a third-party reader sees: camelCase keys, hex ids, 64-bit integers as decimal strings. Each
//! item (span, metric data point, log record) is flattened together with its resource and scope, which
//! is what the assertions are about: that the grouping survived the trip.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// The three OTLP signals, with their JSON keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// (resource list, scope list, item list) keys.
    fn keys(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Signal::Traces => ("resourceSpans", "scopeSpans", "spans"),
            Signal::Metrics => ("resourceMetrics", "scopeMetrics", "metrics"),
            Signal::Logs => ("resourceLogs", "scopeLogs", "logRecords"),
        }
    }
}

/// An attribute value, typed as OTLP types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Arrays, maps, bytes: kept as JSON.
    Other(Value),
}

pub type Attrs = BTreeMap<String, Attr>;

/// Decodes an OTLP JSON `AnyValue`. `intValue` may be a string (as the spec asks) or a number.
pub fn any_value(v: &Value) -> Attr {
    if let Some(s) = v.get("stringValue").and_then(Value::as_str) {
        return Attr::Str(s.to_owned());
    }
    if let Some(i) = v.get("intValue") {
        if let Some(n) = i
            .as_i64()
            .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
        {
            return Attr::Int(n);
        }
    }
    if let Some(d) = v.get("doubleValue") {
        if let Some(n) = d
            .as_f64()
            .or_else(|| d.as_str().and_then(|s| s.parse().ok()))
        {
            return Attr::Double(n);
        }
    }
    if let Some(b) = v.get("boolValue").and_then(Value::as_bool) {
        return Attr::Bool(b);
    }
    Attr::Other(v.clone())
}

/// The `attributes` list of an OTLP JSON object as a map.
pub fn attrs(obj: &Value) -> Attrs {
    obj.get("attributes")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|kv| {
                    let key = kv.get("key")?.as_str()?.to_owned();
                    Some((
                        key,
                        kv.get("value")
                            .map(any_value)
                            .unwrap_or(Attr::Other(Value::Null)),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the complete lines of an OTLP JSON file (a line still being written is left for the next
/// read). A missing file reads as empty. Panics on a complete line that is not JSON: that is a finding.
pub fn read_requests(path: &Path) -> Vec<Value> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => &bytes[..=i],
        None => return Vec::new(),
    };
    complete
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!(
                    "{} line {}: not JSON ({e}): {}",
                    path.display(),
                    i + 1,
                    String::from_utf8_lossy(&line[..line.len().min(300)])
                )
            })
        })
        .collect()
}

/// Reads an OTLP JSON file as it grows: each [`JsonlTail::read_new`] parses only the complete lines
/// written since the last call, so polling a large output file stays cheap. A missing file reads as
/// empty. Panics on a complete line that is not JSON, like [`read_requests`].
#[derive(Debug)]
pub struct JsonlTail {
    path: std::path::PathBuf,
    offset: u64,
    lines: usize,
}

impl JsonlTail {
    pub fn new(path: &Path) -> JsonlTail {
        JsonlTail {
            path: path.to_path_buf(),
            offset: 0,
            lines: 0,
        }
    }

    /// The requests in the lines completed since the last call.
    pub fn read_new(&mut self) -> Vec<Value> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let mut bytes = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut bytes).is_err() {
            return Vec::new();
        }
        let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        self.offset += end as u64 + 1;
        let mut out = Vec::new();
        for line in bytes[..end].split(|b| *b == b'\n') {
            self.lines += 1;
            if line.is_empty() {
                continue;
            }
            out.push(serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!(
                    "{} line {}: not JSON ({e}): {}",
                    self.path.display(),
                    self.lines,
                    String::from_utf8_lossy(&line[..line.len().min(300)])
                )
            }));
        }
        out
    }
}

/// What a metric data point belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricInfo {
    pub name: String,
    pub unit: String,
    /// `sum`, `gauge`, `histogram`, `exponentialHistogram` or `summary`.
    pub kind: String,
    /// For sums.
    pub is_monotonic: Option<bool>,
    pub aggregation_temporality: Option<i64>,
}

/// One span, metric data point or log record with its resource and scope.
#[derive(Debug, Clone)]
pub struct Item {
    pub resource: Attrs,
    pub scope_name: String,
    pub scope_version: String,
    /// Set for metric data points.
    pub metric: Option<MetricInfo>,
    /// The span / data point / log record as JSON.
    pub value: Value,
    /// Its attributes.
    pub attrs: Attrs,
}

impl Item {
    pub fn str_field(&self, key: &str) -> &str {
        self.value.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// A field holding an integer: a decimal string (OTLP JSON's int64/uint64), or a number (enums).
    pub fn int_field(&self, key: &str) -> Option<i64> {
        let v = self.value.get(key)?;
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    }

    pub fn attr(&self, key: &str) -> Option<&Attr> {
        self.attrs.get(key)
    }
}

/// Flattens export requests of `signal` into items.
pub fn items(signal: Signal, requests: &[Value]) -> Vec<Item> {
    let (rk, sk, ik) = signal.keys();
    let mut out = Vec::new();
    for req in requests {
        for r in req.get(rk).and_then(Value::as_array).into_iter().flatten() {
            let resource = r.get("resource").map(attrs).unwrap_or_default();
            for s in r.get(sk).and_then(Value::as_array).into_iter().flatten() {
                let scope = s.get("scope");
                let scope_name = scope
                    .and_then(|sc| sc.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let scope_version = scope
                    .and_then(|sc| sc.get("version"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                for item in s.get(ik).and_then(Value::as_array).into_iter().flatten() {
                    let mut push = |metric: Option<MetricInfo>, value: &Value| {
                        out.push(Item {
                            resource: resource.clone(),
                            scope_name: scope_name.clone(),
                            scope_version: scope_version.clone(),
                            metric,
                            attrs: attrs(value),
                            value: value.clone(),
                        })
                    };
                    if signal != Signal::Metrics {
                        push(None, item);
                        continue;
                    }
                    for kind in [
                        "sum",
                        "gauge",
                        "histogram",
                        "exponentialHistogram",
                        "summary",
                    ] {
                        let Some(data) = item.get(kind) else { continue };
                        let info = MetricInfo {
                            name: item
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                            unit: item
                                .get("unit")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                            kind: kind.to_owned(),
                            is_monotonic: data.get("isMonotonic").and_then(Value::as_bool),
                            aggregation_temporality: data
                                .get("aggregationTemporality")
                                .and_then(Value::as_i64),
                        };
                        for point in data
                            .get("dataPoints")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            push(Some(info.clone()), point);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The number of items of `signal` in the file at `path` so far.
pub fn count_items(path: &Path, signal: Signal) -> usize {
    items(signal, &read_requests(path)).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_with_resource_scope_and_typed_attributes() {
        let line: Value = serde_json::from_str(
            r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeMetrics":[{"scope":{"name":"lib","version":"1.0"},"metrics":[
              {"name":"c","unit":"1","sum":{"isMonotonic":true,"aggregationTemporality":2,"dataPoints":[
                {"asInt":"3","attributes":[{"key":"i","value":{"intValue":"7"}},{"key":"b","value":{"boolValue":true}}]},
                {"asInt":"4","attributes":[{"key":"d","value":{"doubleValue":0.5}}]}]}},
              {"name":"h","histogram":{"dataPoints":[{"count":"1","sum":2.5}]}}]}]}]}"#,
        )
        .unwrap();
        let items = items(Signal::Metrics, &[line]);
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].resource["service.name"], Attr::Str("svc".into()));
        assert_eq!(
            (
                items[0].scope_name.as_str(),
                items[0].scope_version.as_str()
            ),
            ("lib", "1.0")
        );
        assert_eq!(items[0].attrs["i"], Attr::Int(7));
        assert_eq!(items[0].attrs["b"], Attr::Bool(true));
        assert_eq!(items[1].attrs["d"], Attr::Double(0.5));
        assert_eq!(items[0].int_field("asInt"), Some(3));
        let m = items[0].metric.as_ref().unwrap();
        assert_eq!(
            (m.name.as_str(), m.kind.as_str(), m.is_monotonic),
            ("c", "sum", Some(true))
        );
        assert_eq!(items[2].metric.as_ref().unwrap().kind, "histogram");
    }

    #[test]
    fn a_tail_reads_each_complete_line_once() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut tail = JsonlTail::new(&path);
        assert!(tail.read_new().is_empty(), "a missing file reads as empty");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"{\"a\":1}\n{\"a\":2}\n{\"a\"").unwrap();
        let first: Vec<Value> = tail.read_new();
        assert_eq!(
            first,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"a": 2})]
        );
        assert!(tail.read_new().is_empty(), "the partial line waits");
        f.write_all(b":3}\n").unwrap();
        assert_eq!(tail.read_new(), vec![serde_json::json!({"a": 3})]);
    }
}
