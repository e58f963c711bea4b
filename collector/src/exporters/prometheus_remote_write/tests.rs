//! The exporter against an in-process HTTP server that records every request and answers from a
//! script: what goes on the wire, and what a failure of one request of a payload does.

use std::collections::VecDeque;

use axum::body::Bytes as BodyBytes;
use axum::extract::State;
use axum::http::{HeaderMap as AxumHeaders, StatusCode};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use prost::Message;

use super::*;
use crate::prom::remote_write::WriteRequest;

#[derive(Default)]
struct Sink {
    /// Status (and Retry-After) to answer the next requests with; 200 when empty.
    script: VecDeque<u16>,
    received: Vec<(AxumHeaders, WriteRequest)>,
}

type Shared = Arc<Mutex<Sink>>;

async fn write(State(s): State<Shared>, headers: AxumHeaders, body: BodyBytes) -> StatusCode {
    let req = WriteRequest::decode_snappy(&body, 64 << 20).expect("a valid remote-write body");
    let mut s = s.lock().unwrap();
    s.received.push((headers, req));
    StatusCode::from_u16(s.script.pop_front().unwrap_or(200)).unwrap()
}

async fn sink(script: &[u16]) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(Sink {
        script: script.iter().copied().collect(),
        ..Default::default()
    }));
    let app = Router::new()
        .route("/api/v1/write", post(write))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/api/v1/write"), shared)
}

fn config(endpoint: &str, max_samples: usize) -> PrometheusRemoteWriteExporterConfig {
    serde_json::from_value(serde_json::json!({
        "endpoint": endpoint,
        "max_samples_per_request": max_samples,
    }))
    .unwrap()
}

fn exporter(endpoint: &str, max_samples: usize) -> PrometheusRemoteWriteExporter {
    let id: ComponentId = "prometheusremotewrite".parse().unwrap();
    PrometheusRemoteWriteExporter::new(&id, &config(endpoint, max_samples), None, None).unwrap()
}

fn gauges(n: usize, delta_points: usize) -> Payload<Metrics> {
    let point = |i: usize| NumberDataPoint {
        attributes: vec![KeyValue {
            key: "i".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(i.to_string())),
            }),
            ..Default::default()
        }],
        time_unix_nano: 1_700_000_000_000_000_000,
        value: Some(number_data_point::Value::AsInt(i as i64)),
        ..Default::default()
    };
    let mut metrics = vec![Metric {
        name: "g".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: (0..n).map(point).collect(),
        })),
        ..Default::default()
    }];
    if delta_points > 0 {
        metrics.push(Metric {
            name: "d".into(),
            data: Some(Data::Sum(Sum {
                data_points: (0..delta_points).map(point).collect(),
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        });
    }
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Payload::new(Bytes::from(req.encode_to_vec()), n + delta_points)
}

fn first_values(s: &Shared) -> Vec<f64> {
    s.lock()
        .unwrap()
        .received
        .iter()
        .map(|(_, r)| r.timeseries[0].samples[0].value)
        .collect()
}

#[tokio::test]
async fn a_request_carries_the_remote_write_headers_and_body() {
    let (url, s) = sink(&[]).await;
    let exp = exporter(&url, 2000);
    let d = exp.export(&gauges(3, 0)).await.unwrap();
    assert!(d.dropped.is_empty());
    let sink = s.lock().unwrap();
    assert_eq!(sink.received.len(), 1);
    let (headers, req) = &sink.received[0];
    assert_eq!(headers["content-encoding"], "snappy");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["x-prometheus-remote-write-version"], "0.1.0");
    assert!(headers["user-agent"]
        .to_str()
        .unwrap()
        .starts_with("outpost/"));
    assert_eq!(req.timeseries.len(), 3);
    assert!(d.wire_bytes > 0);
}

#[tokio::test]
async fn a_retry_resumes_after_the_requests_already_accepted() {
    // 10 points, 4 samples per request: requests of 4, 4, 2. The second fails once with 503.
    let (url, s) = sink(&[200, 503]).await;
    let exp = exporter(&url, 4);
    let payload = gauges(10, 0);
    let err = exp.export(&payload).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Retryable);
    assert_eq!(err.reason, "http_503");
    assert_eq!(first_values(&s), vec![0.0, 4.0]);
    let d = exp.export(&payload).await.unwrap();
    assert!(d.dropped.is_empty());
    // The first request was not sent again; the failed one was, then the last.
    assert_eq!(first_values(&s), vec![0.0, 4.0, 4.0, 8.0]);
    assert!(exp.progress().is_empty(), "progress is forgotten once done");
}

#[tokio::test]
async fn a_refused_request_drops_only_its_points_and_the_rest_go_out() {
    let (url, s) = sink(&[200, 400, 200]).await;
    let exp = exporter(&url, 4);
    let d = exp.export(&gauges(10, 3)).await.unwrap();
    assert_eq!(first_values(&s).len(), 3);
    let mut dropped = d.dropped.clone();
    dropped.sort();
    assert_eq!(
        dropped,
        vec![
            ("delta_temporality".to_owned(), 3),
            ("http_400".to_owned(), 4)
        ]
    );
}

#[tokio::test]
async fn a_single_refused_request_is_a_permanent_error_for_the_runner() {
    let (url, _s) = sink(&[400]).await;
    let exp = exporter(&url, 2000);
    let err = exp.export(&gauges(3, 0)).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Permanent);
    assert_eq!(err.reason, "http_400");
    assert!(exp.progress().is_empty());
}

#[tokio::test]
async fn too_large_before_anything_was_delivered_lets_the_runner_split() {
    let (url, _s) = sink(&[413]).await;
    let exp = exporter(&url, 4);
    let err = exp.export(&gauges(10, 0)).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::TooLarge);
}

#[tokio::test]
async fn server_errors_are_retryable_and_untranslatable_points_are_counted() {
    let (url, s) = sink(&[500]).await;
    let exp = exporter(&url, 2000);
    let payload = gauges(2, 0);
    assert_eq!(
        exp.export(&payload).await.unwrap_err().class,
        ErrorClass::Retryable
    );
    exp.export(&payload).await.unwrap();
    assert_eq!(s.lock().unwrap().received.len(), 2);

    // Only delta points: nothing to send, all counted.
    let d = exp.export(&gauges(0, 5)).await.unwrap();
    assert_eq!(d.dropped, vec![("delta_temporality".to_owned(), 5)]);
    assert_eq!(d.wire_bytes, 0);
    assert_eq!(s.lock().unwrap().received.len(), 2);
}

#[tokio::test]
async fn the_factory_refuses_other_signals() {
    let id: ComponentId = "prometheusremotewrite".parse().unwrap();
    let cfg = config("http://127.0.0.1:1/api/v1/write", 10);
    assert!(PrometheusRemoteWriteExporter::build::<Metrics>(&id, &cfg, None, None).is_ok());
    let err =
        PrometheusRemoteWriteExporter::build::<outpost_pipelines::Traces>(&id, &cfg, None, None)
            .err()
            .unwrap();
    assert!(err.contains("only sends metrics"), "{err}");
}

#[tokio::test]
async fn progress_of_abandoned_payloads_is_bounded() {
    // A destination that always fails: every payload is remembered for its retry, and the runner may
    // give up on it (max_age) without telling the exporter.
    let (url, _s) = sink(&[503; 200]).await;
    let exp = exporter(&url, 2000);
    let payloads: Vec<_> = (0..MAX_REMEMBERED + 10).map(|_| gauges(1, 0)).collect();
    for p in &payloads {
        exp.export(p).await.unwrap_err();
    }
    assert_eq!(exp.progress().len(), MAX_REMEMBERED);
    // The newest is still remembered, the oldest forgotten.
    let newest = payloads.last().unwrap().bytes.as_ptr() as usize;
    let oldest = payloads[0].bytes.as_ptr() as usize;
    assert!(exp.progress().contains_key(&newest));
    assert!(!exp.progress().contains_key(&oldest));
}
