//! Receiver `prometheusremotewrite`: `POST /api/v1/write` with remote-write 1.0 bodies (a
//! `prometheus.WriteRequest`, protobuf, snappy block-compressed), converted to OTLP metrics.
//!
//! Answers, as the remote-write specification asks: 204 once the data is durably queued; 400 with a
//! plain-text reason for a body that does not decompress or decode (the sender must not retry it); 413
//! for a body over the configured limits; 415 for another content type or encoding (remote-write 2.0
//! included); 429 with `Retry-After` when the pipelines push back, 503 with `Retry-After` while shutting
//! down (the sender retries both).
//!
//! `tls`, `auth` and `rate_limit` work as on the OTLP receivers (the same [`Gate`]): a sender that does
//! not authenticate gets 401 with `WWW-Authenticate`, one over its own budget 429 with the `Retry-After`
//! its budget needs; both are counted (`outpost_receiver_auth_failures_total`,
//! `outpost_receiver_rate_limited_requests_total`) under this receiver's name.
//!
//! Conversion (shared rules in [`crate::prom::to_otlp`]): `job` / `instance` become the resource
//! (`service.name` / `service.instance.id`), other labels the point's attributes, the metric name is kept
//! as sent, and a staleness marker becomes a point with the `NoRecordedValue` flag. Remote-write 1.0
//! carries no type with a series; the metric families' types arrive in separate metadata requests, which
//! are remembered (bounded, [`METADATA_CAPACITY`] families): a counter's series becomes a monotonic
//! cumulative Sum (start time unknown, so 0), every other series a Gauge under its own name, with the
//! family's type in the `prometheus.type` metadata. The parts of a classic histogram or summary (`_bucket`,
//! `_sum`, `_count`, quantiles) stay separate gauges: a sender shards series by hash, so the parts of one
//! histogram arrive in different requests and cannot be reassembled without holding data back. Native
//! histograms are dropped and counted (`reason="native_histogram"`); exemplars are dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use outpost_config::{ComponentId, PrometheusRemoteWriteReceiverConfig, Signal};
use outpost_pipelines::telemetry::ReceiverMetrics;
use outpost_pipelines::{Metrics, Refusal, Telemetry};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::otlp::RETRY_AFTER_SECS;
use super::{admit, Inputs, Outcome};
use crate::net::{LimitedListener, PeerInfo};
use crate::prom::remote_write::{self, MetricType, WriteRequest};
use crate::prom::to_otlp::{
    self, attributes, double_point, resource_attributes, stale_point, string_kv, Labels,
    INSTANCE_LABEL, JOB_LABEL, NAME_LABEL,
};
use crate::receivers::gate::{Denied, Gate};

/// Metric families whose type is remembered from metadata requests; past it the oldest knowledge is
/// forgotten (those series are gauges until the sender's next metadata round, at most a minute).
pub const METADATA_CAPACITY: usize = 100_000;

struct RwState {
    inputs: Arc<Inputs>,
    metrics: ReceiverMetrics,
    gate: Arc<Gate>,
    max_body: usize,
    max_decompressed: usize,
    types: Mutex<HashMap<String, MetricType>>,
}

/// Binds the endpoint and starts serving.
pub async fn start(
    id: &ComponentId,
    cfg: &PrometheusRemoteWriteReceiverConfig,
    inputs: Inputs,
    telemetry: &Telemetry,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, Vec<String>> {
    let key = format!("receivers.{id}.endpoint");
    let listener = crate::net::bind(cfg.endpoint, &key)
        .await
        .map_err(|e| vec![e])?;
    let metrics = telemetry.receiver(&id.to_string(), "http");
    let (tls, gate) = super::otlp::guard(
        &format!("receivers.{id}"),
        cfg.tls.as_ref(),
        cfg.auth.as_ref(),
        cfg.rate_limit.as_ref(),
        &metrics,
        telemetry,
        &[b"h2", b"http/1.1"],
    )
    .map_err(|e| vec![e])?;
    let app = router(cfg, Arc::new(inputs), metrics, gate);
    let addr = listener.local_addr().ok();
    let listener = LimitedListener::with_tls(listener, cfg.max_connections, tls);
    Ok(vec![tokio::spawn(async move {
        tracing::info!(?addr, "Prometheus remote-write receiver listening");
        if let Err(e) = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<PeerInfo>(),
        )
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        {
            tracing::error!(error = %e, "Prometheus remote-write receiver stopped with an error");
        }
    })])
}

pub fn router(
    cfg: &PrometheusRemoteWriteReceiverConfig,
    inputs: Arc<Inputs>,
    metrics: ReceiverMetrics,
    gate: Arc<Gate>,
) -> Router {
    let state = Arc::new(RwState {
        inputs,
        metrics,
        gate,
        max_body: usize::try_from(cfg.max_request_body_size.bytes()).unwrap_or(usize::MAX),
        max_decompressed: usize::try_from(cfg.max_decompressed_body_size.bytes())
            .unwrap_or(usize::MAX),
        types: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route(&cfg.path, post(write))
        .with_state(state)
}

struct Failure {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Why a request was not taken: by the pipelines or the decoder ([`Failure`]), or by the gate (the
/// client's byte budget).
enum Refused {
    Failure(Failure),
    Gate(Denied),
}

impl From<Failure> for Refused {
    fn from(f: Failure) -> Self {
        Refused::Failure(f)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.message),
        )
            .into_response();
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        resp
    }
}

/// A refusal at the gate: 401 with `WWW-Authenticate`, or 429 with the client's wait as Retry-After.
/// Counted by the gate, not again as a refused request.
fn denied_response(denied: Denied) -> Response {
    let message = format!("{}\n", denied.message());
    let plain = (header::CONTENT_TYPE, "text/plain; charset=utf-8");
    match denied {
        Denied::Unauthenticated(_) => (
            StatusCode::UNAUTHORIZED,
            [
                plain,
                (header::WWW_AUTHENTICATE, "Bearer, Basic realm=\"outpost\""),
            ],
            message,
        )
            .into_response(),
        Denied::Limited(wait) => {
            let mut resp = (StatusCode::TOO_MANY_REQUESTS, [plain], message).into_response();
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64),
            );
            resp
        }
    }
}

async fn write(State(state): State<Arc<RwState>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<PeerInfo>>()
        .map(|c| &c.0);
    let client = match state.gate.admit(&headers, peer) {
        Ok(client) => client,
        Err(denied) => return denied_response(denied),
    };
    match write_inner(&state, &headers, body, &client).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(Refused::Gate(denied)) => denied_response(denied),
        Err(Refused::Failure(f)) => {
            if !matches!(
                f.status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) {
                // Refusals by the pipelines were already counted per item in `admit`.
                state.metrics.request_refused(Signal::Metrics, f.reason);
                tracing::debug!(status = %f.status, message = %f.message, "remote-write request refused");
            }
            f.into_response()
        }
    }
}

fn check_headers(headers: &HeaderMap) -> Result<(), Failure> {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let content_type = text(header::CONTENT_TYPE);
    let mut parts = content_type.split(';').map(str::trim);
    if parts.next() != Some(remote_write::CONTENT_TYPE) {
        return Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            format!(
                "unsupported Content-Type '{content_type}' (expected {}, a snappy-compressed \
                 prometheus.WriteRequest)",
                remote_write::CONTENT_TYPE
            ),
        ));
    }
    for param in parts {
        if let Some(proto) = param.strip_prefix("proto=") {
            if proto != "prometheus.writerequest" {
                return Err(Failure::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_content_type",
                    format!(
                        "this endpoint takes remote-write 1.0 (proto=prometheus.WriteRequest), not \
                         proto={proto}; configure the sender for remote-write 1.0"
                    ),
                ));
            }
        }
    }
    let encoding = text(header::CONTENT_ENCODING);
    if !(encoding.is_empty() || encoding == remote_write::CONTENT_ENCODING) {
        return Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
            format!("unsupported Content-Encoding '{encoding}' (expected snappy)"),
        ));
    }
    Ok(())
}

async fn write_inner(
    state: &RwState,
    headers: &HeaderMap,
    body: Body,
    client: &crate::receivers::gate::ClientKey,
) -> Result<(), Refused> {
    check_headers(headers)?;
    let raw = Limited::new(body, state.max_body)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Failure::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!(
                        "the request body exceeds max_request_body_size ({} bytes); lower the sender's \
                         max_samples_per_send",
                        state.max_body
                    ),
                )
            } else {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "body_read_error",
                    format!("cannot read the body: {e}"),
                )
            }
        })?
        .to_bytes();
    if let Err(denied) = state.gate.admit_bytes(Some(client), raw.len() as u64) {
        return Err(Refused::Gate(denied));
    }
    let request =
        WriteRequest::decode_snappy(&raw, state.max_decompressed).map_err(|e| match e {
            remote_write::DecodeError::TooLarge { .. } => Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "{e} (max_decompressed_body_size); lower the sender's max_samples_per_send"
                ),
            ),
            other => Failure::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("malformed remote-write body: {other}"),
            ),
        })?;
    let bytes = raw.len() as u64;
    let converted = {
        let mut types = state.types.lock().unwrap_or_else(|e| e.into_inner());
        remember_types(&mut types, &request);
        convert(&request, &types)
    };
    if converted.invalid > 0 {
        state
            .metrics
            .refused(Signal::Metrics, "invalid", converted.invalid);
    }
    if converted.native_histograms > 0 {
        state.metrics.refused(
            Signal::Metrics,
            "native_histogram",
            converted.native_histograms,
        );
    }
    match admit(&state.inputs, &state.metrics, converted.metrics, bytes).await {
        Outcome::Accepted(_) => Ok(()),
        Outcome::Refused(r) => Err(refusal(r).into()),
        Outcome::NotEnabled => Err(Failure::new(
            StatusCode::NOT_FOUND,
            "signal_not_enabled",
            "this receiver feeds no metrics pipeline",
        )
        .into()),
    }
}

fn refusal(r: Refusal) -> Failure {
    match r {
        Refusal::Pressure(reason) => Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            "pressure",
            format!("outpost is under pressure ({reason}); retry later"),
        ),
        Refusal::Unavailable(reason) => Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("outpost is not accepting data ({reason}); retry later"),
        ),
    }
}

fn remember_types(types: &mut HashMap<String, MetricType>, request: &WriteRequest) {
    for m in &request.metadata {
        let Ok(kind) = MetricType::try_from(m.r#type) else {
            continue;
        };
        if types.len() >= METADATA_CAPACITY && !types.contains_key(&m.metric_family_name) {
            types.clear();
        }
        types.insert(m.metric_family_name.clone(), kind);
    }
}

/// The family type of a series named `name`: its own, or its family's when it is a `_total`,
/// `_bucket`, `_sum`, `_count` or `_created` part.
fn type_of(name: &str, types: &HashMap<String, MetricType>) -> (MetricType, bool) {
    if let Some(t) = types.get(name) {
        return (*t, true);
    }
    for suffix in ["_total", "_bucket", "_sum", "_count", "_created"] {
        if let Some(t) = name.strip_suffix(suffix).and_then(|base| types.get(base)) {
            // Only a counter's `_total` (or unsuffixed) series is its value.
            return (*t, suffix == "_total");
        }
    }
    (MetricType::Unknown, true)
}

fn type_name(t: MetricType) -> &'static str {
    match t {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::GaugeHistogram => "gaugehistogram",
        MetricType::Summary => "summary",
        MetricType::Info => "info",
        MetricType::Stateset => "stateset",
        MetricType::Unknown => "unknown",
    }
}

/// (resource index, scope, metric name, is a counter) → (scope index, metric index).
type MetricKey = (usize, Option<(String, String)>, String, bool);

/// A converted request.
pub struct Converted {
    pub metrics: Metrics,
    /// Series without a name, left out.
    pub invalid: usize,
    /// Native histogram samples, left out.
    pub native_histograms: usize,
}

/// Converts one request (see the module docs).
pub fn convert(request: &WriteRequest, types: &HashMap<String, MetricType>) -> Converted {
    let mut invalid = 0;
    let mut native_histograms = 0;
    let mut resources: Vec<ResourceMetrics> = Vec::new();
    let mut resource_index: HashMap<(String, String), usize> = HashMap::new();
    let mut metric_index: HashMap<MetricKey, (usize, usize)> = HashMap::new();
    for ts in &request.timeseries {
        native_histograms += ts.histograms.len();
        if ts.samples.is_empty() {
            continue;
        }
        let mut labels: Labels = ts
            .labels
            .iter()
            .filter(|l| !l.value.is_empty())
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let Some(name) = to_otlp::take_label(&mut labels, NAME_LABEL) else {
            invalid += ts.samples.len();
            continue;
        };
        let job = to_otlp::take_label(&mut labels, JOB_LABEL).unwrap_or_default();
        let instance = to_otlp::take_label(&mut labels, INSTANCE_LABEL).unwrap_or_default();
        let scope = to_otlp::take_scope(&mut labels);
        let (family_type, is_value) = type_of(&name, types);
        let counter = family_type == MetricType::Counter && is_value;
        let ri = *resource_index
            .entry((job.clone(), instance.clone()))
            .or_insert_with(|| {
                resources.push(ResourceMetrics {
                    resource: Some(Resource {
                        attributes: resource_attributes(Some(&job), Some(&instance), None, &[]),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                resources.len() - 1
            });
        let scopes = &mut resources[ri].scope_metrics;
        let (si, mi) = *metric_index
            .entry((ri, scope.clone(), name.clone(), counter))
            .or_insert_with(|| {
                let wanted = match &scope {
                    Some((n, v)) => InstrumentationScope {
                        name: n.clone(),
                        version: v.clone(),
                        ..Default::default()
                    },
                    None => to_otlp::outpost_scope("prometheusremotewrite"),
                };
                let si = match scopes
                    .iter()
                    .position(|s| s.scope.as_ref() == Some(&wanted))
                {
                    Some(i) => i,
                    None => {
                        scopes.push(ScopeMetrics {
                            scope: Some(wanted),
                            ..Default::default()
                        });
                        scopes.len() - 1
                    }
                };
                let data = if counter {
                    metric::Data::Sum(Sum {
                        data_points: Vec::new(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })
                } else {
                    metric::Data::Gauge(Gauge::default())
                };
                scopes[si].metrics.push(Metric {
                    name: name.clone(),
                    metadata: vec![string_kv("prometheus.type", type_name(family_type))],
                    data: Some(data),
                    ..Default::default()
                });
                (si, scopes[si].metrics.len() - 1)
            });
        let points: &mut Vec<NumberDataPoint> = match &mut scopes[si].metrics[mi].data {
            Some(metric::Data::Sum(s)) => &mut s.data_points,
            Some(metric::Data::Gauge(g)) => &mut g.data_points,
            _ => continue,
        };
        let attrs = attributes(&labels);
        for s in &ts.samples {
            let time = to_otlp::ms_to_ns(s.timestamp);
            points.push(if remote_write::is_stale_nan(s.value) {
                stale_point(attrs.clone(), 0, time)
            } else {
                double_point(attrs.clone(), 0, time, s.value)
            });
        }
    }
    Converted {
        metrics: Metrics {
            resource_metrics: resources,
        },
        invalid,
        native_histograms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom::remote_write::{Label, MetricMetadata, Sample, TimeSeries};
    use crate::prom::to_otlp::NO_RECORDED_VALUE;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point;

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(k, v)| Label::new(*k, *v)).collect(),
            samples: samples
                .iter()
                .map(|(value, timestamp)| Sample {
                    value: *value,
                    timestamp: *timestamp,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn series_become_points_under_their_job_and_instance() {
        let req = WriteRequest {
            timeseries: vec![
                series(
                    &[
                        ("__name__", "http_requests_total"),
                        ("code", "200"),
                        ("instance", "a:1"),
                        ("job", "api"),
                    ],
                    &[(5.0, 1_000), (7.0, 2_000)],
                ),
                series(
                    &[("__name__", "temp"), ("instance", "a:1"), ("job", "api")],
                    &[(remote_write::stale_nan(), 3_000)],
                ),
                series(&[("code", "200")], &[(1.0, 1)]),
            ],
            metadata: vec![],
        };
        let mut types = HashMap::new();
        remember_types(
            &mut types,
            &WriteRequest {
                timeseries: vec![],
                metadata: vec![MetricMetadata {
                    r#type: MetricType::Counter as i32,
                    metric_family_name: "http_requests".into(),
                    help: String::new(),
                    unit: String::new(),
                }],
            },
        );
        let c = convert(&req, &types);
        assert_eq!(c.invalid, 1);
        assert_eq!(c.metrics.resource_metrics.len(), 1);
        let rm = &c.metrics.resource_metrics[0];
        let res = rm.resource.as_ref().unwrap();
        assert_eq!(res.attributes[0], string_kv("service.name", "api"));
        assert_eq!(res.attributes[1], string_kv("service.instance.id", "a:1"));
        let metrics = &rm.scope_metrics[0].metrics;
        assert_eq!(metrics[0].name, "http_requests_total");
        let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
            panic!("a counter is a sum: {:?}", metrics[0])
        };
        assert!(sum.is_monotonic);
        let values: Vec<(Option<number_data_point::Value>, u64)> = sum
            .data_points
            .iter()
            .map(|p| (p.value, p.time_unix_nano))
            .collect();
        assert_eq!(
            values,
            vec![
                (Some(number_data_point::Value::AsDouble(5.0)), 1_000_000_000),
                (Some(number_data_point::Value::AsDouble(7.0)), 2_000_000_000)
            ]
        );
        assert_eq!(
            sum.data_points[0].attributes,
            vec![string_kv("code", "200")]
        );
        let Some(metric::Data::Gauge(g)) = &metrics[1].data else {
            panic!()
        };
        assert_eq!(g.data_points[0].flags, NO_RECORDED_VALUE);
        assert_eq!(g.data_points[0].value, None);
        let t = metrics[1].metadata[0].value.as_ref().unwrap();
        assert_eq!(
            t.value,
            Some(any_value::Value::StringValue("unknown".into()))
        );
    }

    #[test]
    fn content_type_and_encoding_are_checked() {
        let h = |ct: &str, enc: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            if !enc.is_empty() {
                h.insert(
                    header::CONTENT_ENCODING,
                    HeaderValue::from_str(enc).unwrap(),
                );
            }
            check_headers(&h).map_err(|f| f.status)
        };
        assert!(h("application/x-protobuf", "snappy").is_ok());
        assert!(h(
            "application/x-protobuf;proto=prometheus.WriteRequest",
            "snappy"
        )
        .is_ok());
        assert_eq!(
            h(
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                "snappy"
            ),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(
            h("application/json", "snappy"),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(
            h("application/x-protobuf", "gzip"),
            Err(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
    }

    async fn post(body: Vec<u8>, content_type: &str) -> (StatusCode, String) {
        use tower::ServiceExt;
        let telemetry = Telemetry::new();
        let metrics = telemetry.receiver("prometheusremotewrite", "http");
        let gate = Gate::new(None, None, None, metrics.clone()).unwrap();
        let app = router(
            &PrometheusRemoteWriteReceiverConfig::default(),
            Arc::new(Inputs::default()),
            metrics,
            Arc::new(gate),
        );
        let req = http::Request::post("/api/v1/write")
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_ENCODING, "snappy")
            .body(Body::from(body))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&text).into_owned())
    }

    #[tokio::test]
    async fn malformed_bodies_are_a_400_with_their_reason() {
        let (status, text) =
            post(b"definitely not snappy".to_vec(), "application/x-protobuf").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(text.contains("snappy"), "{text}");
        // Valid snappy around bytes that are not a WriteRequest.
        let body = remote_write::snappy_compress(&[0xff, 0xff, 0xff]).unwrap();
        let (status, text) = post(body, "application/x-protobuf").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(text.contains("WriteRequest"), "{text}");
        let (status, _) = post(Vec::new(), "text/plain").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        // A well-formed request with no metrics pipeline behind it is refused, not dropped silently.
        let body = WriteRequest {
            timeseries: vec![series(&[("__name__", "x")], &[(1.0, 1)])],
            metadata: vec![],
        }
        .encode_snappy()
        .unwrap();
        let (status, _) = post(body, "application/x-protobuf").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
