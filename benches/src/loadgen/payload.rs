//! The one export request of a run, built, encoded and compressed up front.
//!
//! A load generator that encodes per request measures its own encoder as much as the server. So
//! loadgen builds a single request, encodes it once with prost and compresses it once, and every
//! request sends those same bytes ([`Bytes`] clones share one buffer). The one exception is
//! `--fresh-trace-ids`, for tail sampling: each request is then a copy with a counter written into its
//! trace ids ([`Payload::with_fresh_trace_ids`]), found once in the encoding, so nothing is re-encoded.
//!
//! The content is meant to cost the server what real traffic costs: one resource with the usual
//! identifying attributes, one scope, and `batch` items with about six attributes each, ids that
//! look random but come from a counter (so runs are reproducible), and a mix of names, kinds,
//! severities and statuses. Every builder yields exactly `batch` items: the accepted-items count
//! in the report relies on it.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    },
    common::v1::{any_value::Value, AnyValue, InstrumentationScope, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber},
    metrics::v1::{
        metric::Data, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum,
    },
    resource::v1::Resource,
    trace::v1::{span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status},
};
use prost::Message;

use super::compression::Compression;
use super::signal::Signal;

/// The request every call of a run sends.
#[derive(Debug, Clone)]
pub struct Payload {
    signal: Signal,
    items: u64,
    encoded: Bytes,
    compressed: Option<Bytes>,
    /// Where the spans' trace ids start in `encoded` (traces only).
    trace_ids: Vec<usize>,
}

impl Payload {
    /// Builds, encodes and (unless `compression` is none) compresses the request for `signal`
    /// with `batch` items.
    pub fn build(signal: Signal, batch: u32, compression: Compression) -> Payload {
        let encoded = match signal {
            Signal::Traces => traces_request(batch).encode_to_vec(),
            Signal::Metrics => metrics_request(batch).encode_to_vec(),
            Signal::Logs => logs_request(batch).encode_to_vec(),
        };
        let compressed = compression.compress(&encoded);
        let trace_ids = match signal {
            Signal::Traces => trace_id_offsets(&encoded, batch),
            _ => Vec::new(),
        };
        Payload {
            signal,
            items: u64::from(batch),
            encoded: Bytes::from(encoded),
            compressed,
            trace_ids,
        }
    }

    /// The encoded request with `n` written into the high half of every trace id (XOR), so each `n`
    /// gives other traces with the same structure.
    pub fn with_fresh_trace_ids(&self, n: u64) -> Bytes {
        let mut bytes = self.encoded.to_vec();
        for &at in &self.trace_ids {
            for (b, x) in bytes[at..at + 8].iter_mut().zip(n.to_be_bytes()) {
                *b ^= x;
            }
        }
        Bytes::from(bytes)
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Items (spans, data points or log records) in the request.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The request as prost encoded it.
    pub fn encoded(&self) -> &Bytes {
        &self.encoded
    }

    /// The encoded request compressed once, if the run compresses.
    pub fn compressed(&self) -> Option<&Bytes> {
        self.compressed.as_ref()
    }

    /// What goes in an HTTP body or a gRPC message on the wire: compressed if compressing.
    pub fn wire_body(&self) -> &Bytes {
        self.compressed.as_ref().unwrap_or(&self.encoded)
    }
}

/// An export request with exactly `batch` spans: traces of eight spans, a server span at the
/// root and database, cache and internal spans under it.
pub fn traces_request(batch: u32) -> ExportTraceServiceRequest {
    const SPANS_PER_TRACE: u64 = 8;
    const ROUTES: [&str; 4] = [
        "/api/v1/orders",
        "/api/v1/orders/{id}",
        "/api/v1/cart",
        "/api/v1/checkout",
    ];

    let now = unix_nanos_now();
    let batch = u64::from(batch);
    let spans = (0..batch)
        .map(|i| {
            let trace = i / SPANS_PER_TRACE;
            let root = trace * SPANS_PER_TRACE;
            let r = mix(i ^ 0x7261_6365);
            // Spread start times over the last `batch` milliseconds so the request looks like a
            // window of recent traffic rather than one instant.
            let start = now.saturating_sub((batch - i) * 1_000_000);
            let end = start + 50_000 + r % 20_000_000;
            let http_status = match r % 50 {
                0 => 500,
                1 => 404,
                2 | 3 => 201,
                _ => 200,
            };
            let (name, kind, attributes) = if i == root {
                let method = if r.is_multiple_of(3) { "POST" } else { "GET" };
                let route = ROUTES[(trace % 4) as usize];
                (
                    format!("{method} {route}"),
                    SpanKind::Server,
                    vec![
                        string("http.request.method", method),
                        string("http.route", route),
                        int("http.response.status_code", http_status),
                        string("url.scheme", "https"),
                        string("server.address", "orders.edge.local"),
                        string("user_agent.original", "edge-client/2.7.1 (linux; arm64)"),
                    ],
                )
            } else {
                match r % 3 {
                    0 => (
                        "SELECT orders".to_owned(),
                        SpanKind::Client,
                        vec![
                            string("db.system.name", "postgresql"),
                            string("db.namespace", "orders"),
                            string("db.operation.name", "SELECT"),
                            string("db.collection.name", "orders"),
                            string("server.address", "db.edge.local"),
                            int("server.port", 5432),
                        ],
                    ),
                    1 => (
                        "GET".to_owned(),
                        SpanKind::Client,
                        vec![
                            string("db.system.name", "redis"),
                            string("db.operation.name", "GET"),
                            string("db.query.text", format!("GET cart:{}", r % 100_000)),
                            string("server.address", "cache.edge.local"),
                            int("server.port", 6379),
                            boolean("cache.hit", !r.is_multiple_of(4)),
                        ],
                    ),
                    _ => (
                        "render order".to_owned(),
                        SpanKind::Internal,
                        vec![
                            string("code.function.name", "orders::render::render_order"),
                            string("code.file.path", "src/render.rs"),
                            int("code.line.number", 120 + (r % 80) as i64),
                            int("thread.id", (r % 16) as i64),
                            string("thread.name", format!("worker-{}", r % 16)),
                            double("render.size_kb", (r % 10_000) as f64 / 100.0),
                        ],
                    ),
                }
            };
            let status = if i == root && http_status >= 500 {
                Status {
                    code: StatusCode::Error as i32,
                    message: "upstream request timed out".to_owned(),
                }
            } else {
                Status {
                    code: StatusCode::Unset as i32,
                    message: String::new(),
                }
            };
            Span {
                trace_id: trace_id(trace),
                span_id: span_id(i),
                parent_span_id: if i == root { Vec::new() } else { span_id(root) },
                flags: 0x01, // W3C trace flags: sampled
                name,
                kind: kind as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                status: Some(status),
                ..Default::default()
            }
        })
        .collect();

    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource()),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                schema_url: SCHEMA_URL.to_owned(),
            }],
            schema_url: SCHEMA_URL.to_owned(),
        }],
    }
}

/// Where the trace ids of [`traces_request`]`(batch)` start in its encoding `encoded`: each is a 16-byte
/// field 1 of a span (tag 0x0a, length 0x10) holding one of the request's ids.
fn trace_id_offsets(encoded: &[u8], batch: u32) -> Vec<usize> {
    let ids: std::collections::HashSet<Vec<u8>> =
        (0..u64::from(batch).div_ceil(8)).map(trace_id).collect();
    (0..encoded.len().saturating_sub(17))
        .filter(|&i| {
            encoded[i] == 0x0a && encoded[i + 1] == 0x10 && ids.contains(&encoded[i + 2..i + 18])
        })
        .map(|i| i + 2)
        .collect()
}

/// An export request with exactly `batch` data points: gauges and sums of four points each
/// (the last metric takes what is left), each point a distinct attribute set.
pub fn metrics_request(batch: u32) -> ExportMetricsServiceRequest {
    const POINTS_PER_METRIC: u32 = 4;
    const STATES: [&str; 4] = ["user", "system", "idle", "wait"];
    enum Kind {
        Gauge,
        Sum { monotonic: bool },
    }
    const METRICS: [(&str, &str, &str, Kind); 6] = [
        (
            "system.cpu.utilization",
            "1",
            "CPU time fraction by state",
            Kind::Gauge,
        ),
        (
            "system.memory.usage",
            "By",
            "Memory in use by state",
            Kind::Sum { monotonic: false },
        ),
        (
            "http.server.request.count",
            "{request}",
            "Requests served",
            Kind::Sum { monotonic: true },
        ),
        (
            "system.network.io",
            "By",
            "Bytes moved by direction",
            Kind::Sum { monotonic: true },
        ),
        (
            "process.open_file_descriptor.count",
            "{file_descriptor}",
            "Open files",
            Kind::Gauge,
        ),
        (
            "queue.depth",
            "{item}",
            "Items waiting in the queue",
            Kind::Gauge,
        ),
    ];

    let now = unix_nanos_now();
    let start = now.saturating_sub(3_600_000_000_000);
    let metric_count = batch.div_ceil(POINTS_PER_METRIC);
    let metrics = (0..metric_count)
        .map(|m| {
            let (name, unit, description, kind) = &METRICS[(m as usize) % METRICS.len()];
            let points_here = POINTS_PER_METRIC.min(batch - m * POINTS_PER_METRIC);
            let data_points = (0..points_here).map(|k| {
                let series = m * POINTS_PER_METRIC + k;
                let r = mix(u64::from(series) ^ 0x6d65_7472);
                let value = match kind {
                    Kind::Gauge => number_data_point::Value::AsDouble((r % 10_000) as f64 / 100.0),
                    Kind::Sum { .. } => number_data_point::Value::AsInt((r % 1_000_000_000) as i64),
                };
                NumberDataPoint {
                    attributes: vec![
                        string("cloud.region", "eu-west-1"),
                        string("cloud.availability_zone", "eu-west-1a"),
                        string("k8s.node.pool", "edge"),
                        string("instance.id", format!("i-{:012x}", r & 0xffff_ffff_ffff)),
                        int("series", i64::from(series)),
                        string("state", STATES[k as usize]),
                    ],
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    value: Some(value),
                    ..Default::default()
                }
            });
            let data = match kind {
                Kind::Gauge => Data::Gauge(Gauge {
                    data_points: data_points.collect(),
                }),
                Kind::Sum { monotonic } => Data::Sum(Sum {
                    data_points: data_points.collect(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: *monotonic,
                }),
            };
            Metric {
                name: (*name).to_owned(),
                description: (*description).to_owned(),
                unit: (*unit).to_owned(),
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();

    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                schema_url: SCHEMA_URL.to_owned(),
            }],
            schema_url: SCHEMA_URL.to_owned(),
        }],
    }
}

/// The shortest and longest log body, in bytes.
pub const LOG_BODY_LEN: std::ops::RangeInclusive<usize> = 100..=200;

/// An export request with exactly `batch` log records: access-log-like bodies of 100 to 200
/// bytes, mostly INFO with some DEBUG, WARN and ERROR, half of them tied to a trace.
pub fn logs_request(batch: u32) -> ExportLogsServiceRequest {
    // Appended to every body before cutting it to length, so each body reaches the longest
    // length whatever the numbers in it.
    const FILLER: &str = " upstream=orders.edge.local:8080 pool=edge-a cache=miss retries=0 \
        feature_flags=checkout_v2,fast_cart region=eu-west-1 build=2024.11.3-7f3c2a1 note=ok";

    let now = unix_nanos_now();
    let batch_len = u64::from(batch);
    let log_records = (0..batch_len)
        .map(|i| {
            let r = mix(i ^ 0x6c6f_6773);
            let (severity, severity_text) = match r % 20 {
                0 => (SeverityNumber::Error, "ERROR"),
                1 | 2 => (SeverityNumber::Warn, "WARN"),
                3..=5 => (SeverityNumber::Debug, "DEBUG"),
                _ => (SeverityNumber::Info, "INFO"),
            };
            let method = if r.is_multiple_of(3) { "POST" } else { "GET" };
            let status = match severity {
                SeverityNumber::Error => 500,
                SeverityNumber::Warn => 429,
                _ => 200,
            };
            let mut body = format!(
                "{method} /api/v1/orders/{} completed status={status} duration_ms={} user_id=u{} \
                 request_id={:016x}{FILLER}",
                r % 1_000_000,
                r % 2_000,
                r % 50_000,
                mix(r),
            );
            let target = LOG_BODY_LEN.start() + (r % 101) as usize;
            body.truncate(target); // ASCII only, so any cut is a char boundary
            let time = now.saturating_sub((batch_len - i) * 100_000);
            let traced = i % 2 == 0;
            LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: time + 1_000_000,
                severity_number: severity as i32,
                severity_text: severity_text.to_owned(),
                body: Some(AnyValue {
                    value: Some(Value::StringValue(body)),
                }),
                attributes: vec![
                    string("log.logger", "orders.handler"),
                    string("thread.name", format!("worker-{}", r % 16)),
                    string("code.function.name", "orders::handler::handle_order"),
                    string("http.request.method", method),
                    int("http.response.status_code", status),
                    string("user.id", format!("u{}", r % 50_000)),
                ],
                trace_id: if traced { trace_id(i / 8) } else { Vec::new() },
                span_id: if traced { span_id(i) } else { Vec::new() },
                flags: u32::from(traced),
                ..Default::default()
            }
        })
        .collect();

    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records,
                schema_url: SCHEMA_URL.to_owned(),
            }],
            schema_url: SCHEMA_URL.to_owned(),
        }],
    }
}

const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.26.0";

fn resource() -> Resource {
    Resource {
        attributes: vec![
            string("service.name", "edge-orders"),
            string("service.version", "2.7.1"),
            string("service.instance.id", "edge-orders-5f7c9d-x2k4q"),
            string("host.name", "edge-node-042"),
            string("host.arch", "arm64"),
            string("os.type", "linux"),
            string("deployment.environment.name", "bench"),
            string("telemetry.sdk.name", "outpost-loadgen"),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "outpost.loadgen".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

/// splitmix64: turns a counter into well-spread bits, so ids look random to hashing and
/// sampling in the server while every run sends the same request.
const fn mix(counter: u64) -> u64 {
    let mut z = counter.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 16-byte trace id; never all zeros, which OTLP treats as invalid.
fn trace_id(trace: u64) -> Vec<u8> {
    let high = mix(trace ^ 0x7472_6163_6500_0000);
    let low = mix(trace ^ 0x0000_0074_7261_6365) | 1;
    [high.to_be_bytes(), low.to_be_bytes()].concat()
}

/// An 8-byte span id; never all zeros.
fn span_id(span: u64) -> Vec<u8> {
    (mix(span ^ 0x7370_616e_0000_0000) | 1)
        .to_be_bytes()
        .to_vec()
}

fn unix_nanos_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn attribute(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    attribute(key, Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    attribute(key, Value::IntValue(value))
}

fn double(key: &str, value: f64) -> KeyValue {
    attribute(key, Value::DoubleValue(value))
}

fn boolean(key: &str, value: bool) -> KeyValue {
    attribute(key, Value::BoolValue(value))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;

    const BATCHES: [u32; 7] = [1, 3, 4, 5, 8, 512, 1001];

    #[test]
    fn fresh_trace_ids_change_every_trace_and_keep_the_traces_whole() {
        let payload = Payload::build(Signal::Traces, 512, Compression::None);
        let ids = |bytes: &[u8]| -> Vec<Vec<u8>> {
            ExportTraceServiceRequest::decode(bytes)
                .unwrap()
                .resource_spans[0]
                .scope_spans[0]
                .spans
                .iter()
                .map(|s| s.trace_id.clone())
                .collect()
        };
        let original = ids(payload.encoded());
        let fresh = ids(&payload.with_fresh_trace_ids(7));
        assert_eq!(fresh.len(), 512);
        for (a, b) in original.iter().zip(&fresh) {
            assert_ne!(a, b, "every span gets a new trace id");
            assert_eq!(a[8..], b[8..], "only the high half changes");
        }
        let distinct = |v: &[Vec<u8>]| v.iter().collect::<HashSet<_>>().len();
        assert_eq!(distinct(&fresh), distinct(&original), "traces stay whole");
        assert_ne!(fresh, ids(&payload.with_fresh_trace_ids(8)));
    }

    fn span_count(request: &ExportTraceServiceRequest) -> usize {
        request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    }

    fn data_point_count(request: &ExportMetricsServiceRequest) -> usize {
        request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| match m.data.as_ref().expect("every metric has data") {
                Data::Gauge(g) => g.data_points.len(),
                Data::Sum(s) => s.data_points.len(),
                other => panic!("loadgen only builds gauges and sums, got {other:?}"),
            })
            .sum()
    }

    fn log_count(request: &ExportLogsServiceRequest) -> usize {
        request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum()
    }

    #[test]
    fn every_signal_has_exactly_batch_items_after_encoding() {
        for batch in BATCHES {
            let n = batch as usize;
            let traces = Payload::build(Signal::Traces, batch, Compression::None);
            let metrics = Payload::build(Signal::Metrics, batch, Compression::None);
            let logs = Payload::build(Signal::Logs, batch, Compression::None);
            assert_eq!(
                span_count(&ExportTraceServiceRequest::decode(&traces.encoded()[..]).unwrap()),
                n
            );
            assert_eq!(
                data_point_count(
                    &ExportMetricsServiceRequest::decode(&metrics.encoded()[..]).unwrap()
                ),
                n
            );
            assert_eq!(
                log_count(&ExportLogsServiceRequest::decode(&logs.encoded()[..]).unwrap()),
                n
            );
            for payload in [traces, metrics, logs] {
                assert_eq!(payload.items(), u64::from(batch));
            }
        }
    }

    #[test]
    fn spans_have_valid_distinct_ids_and_six_attributes() {
        let request = traces_request(512);
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        let mut span_ids = HashSet::new();
        let mut trace_ids = HashSet::new();
        for span in spans {
            assert_eq!(span.trace_id.len(), 16);
            assert_eq!(span.span_id.len(), 8);
            assert!(span.trace_id.iter().any(|&b| b != 0));
            assert!(span.span_id.iter().any(|&b| b != 0));
            assert!(span.end_time_unix_nano > span.start_time_unix_nano);
            assert_eq!(span.attributes.len(), 6);
            assert!(!span.name.is_empty());
            assert!(
                span_ids.insert(span.span_id.clone()),
                "span ids are distinct"
            );
            trace_ids.insert(span.trace_id.clone());
        }
        assert_eq!(trace_ids.len(), 512 / 8, "eight spans per trace");
        let kinds: HashSet<i32> = spans.iter().map(|s| s.kind).collect();
        assert!(kinds.len() >= 3, "a mix of span kinds: {kinds:?}");
    }

    #[test]
    fn resource_and_scope_identify_the_sender() {
        let request = logs_request(1);
        let resource = request.resource_logs[0].resource.as_ref().unwrap();
        let keys: Vec<&str> = resource
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert!(keys.contains(&"service.name"));
        assert!(keys.contains(&"host.name"));
        assert!(keys.len() >= 5);
        assert!(request.resource_logs[0].scope_logs[0].scope.is_some());
    }

    #[test]
    fn log_bodies_are_100_to_200_bytes_with_mixed_severity() {
        let request = logs_request(1000);
        let records = &request.resource_logs[0].scope_logs[0].log_records;
        let mut severities = HashSet::new();
        for record in records {
            let Some(Value::StringValue(body)) =
                record.body.as_ref().and_then(|b| b.value.as_ref())
            else {
                panic!("log body is a string");
            };
            assert!(
                LOG_BODY_LEN.contains(&body.len()),
                "{} bytes: {body}",
                body.len()
            );
            assert_eq!(record.attributes.len(), 6);
            severities.insert(record.severity_number);
        }
        assert_eq!(severities.len(), 4, "DEBUG, INFO, WARN and ERROR all occur");
    }

    #[test]
    fn compressed_payload_decompresses_to_the_encoded_request() {
        let payload = Payload::build(Signal::Traces, 100, Compression::Zstd);
        let compressed = payload.compressed().unwrap();
        assert_eq!(payload.wire_body(), compressed);
        assert_eq!(
            zstd::decode_all(&compressed[..]).unwrap(),
            payload.encoded().to_vec()
        );
        let plain = Payload::build(Signal::Traces, 100, Compression::None);
        assert_eq!(plain.wire_body(), plain.encoded());
    }
}
