//! In-process smoke tests: [`run`] against tiny OTLP servers on 127.0.0.1:0 that count what
//! they receive, so the report's numbers are checked against what a server actually saw.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use clap::Parser;
use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse},
    trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};

use super::*;

fn plan(endpoint: &str, args: &[&str]) -> Plan {
    let base = ["loadgen", "--endpoint", endpoint, "--quiet"];
    Options::try_parse_from(base.iter().chain(args))
        .expect("test flags parse")
        .plan()
        .expect("test plan is valid")
}

/// How the test gRPC server answers each export.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Accept,
    RejectOneSpan,
    Fail(Code),
    Stall,
}

/// A TraceService that counts the spans it receives.
#[derive(Clone)]
struct TraceSink {
    spans: Arc<AtomicU64>,
    reply: Reply,
}

#[tonic::async_trait]
impl TraceService for TraceSink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::SeqCst);
        let partial_success = match self.reply {
            Reply::Accept => None,
            Reply::RejectOneSpan => Some(ExportTracePartialSuccess {
                rejected_spans: 1,
                error_message: "one span too old".to_owned(),
            }),
            Reply::Fail(code) => return Err(Status::new(code, "test server says no")),
            Reply::Stall => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                None
            }
        };
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success,
        }))
    }
}

/// Starts a gRPC trace receiver; returns its address, its span counter and its task.
async fn grpc_server(reply: Reply) -> (String, Arc<AtomicU64>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spans = Arc::new(AtomicU64::new(0));
    let service = TraceServiceServer::new(TraceSink {
        spans: spans.clone(),
        reply,
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .accept_compressed(CompressionEncoding::Zstd);
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (addr.to_string(), spans, task)
}

/// An address where nothing listens: bound, then released.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn grpc_server_sees_exactly_what_the_report_says() {
    let (addr, spans, server) = grpc_server(Reply::Accept).await;
    let report = run(&plan(&addr, &["--count", "20", "--batch", "10"]))
        .await
        .unwrap();
    server.abort();

    assert_eq!(spans.load(Ordering::SeqCst), 200);
    assert_eq!(report.requests, 20);
    assert_eq!(report.items_sent, 200);
    assert_eq!(report.items_accepted, 200);
    assert_eq!(report.items_rejected, 0);
    assert_eq!(report.answers, [("OK".to_owned(), 20)].into());
    assert_eq!(report.latency.count, 20);
    assert!(
        report.latency.max_us >= report.latency.p99_us
            && report.latency.p99_us >= report.latency.p50_us
    );
    let message = Payload::build(Signal::Traces, 10, Compression::None)
        .encoded()
        .len() as u64;
    assert_eq!(report.request_bytes, message + 5);
    assert_eq!(report.wire_bytes, 20 * (message + 5));
}

#[tokio::test]
async fn grpc_compressed_requests_arrive_whole() {
    for compression in ["gzip", "zstd"] {
        let (addr, spans, server) = grpc_server(Reply::Accept).await;
        let args = [
            "--count",
            "20",
            "--batch",
            "10",
            "--compression",
            compression,
            "--connections",
            "3",
        ];
        let report = run(&plan(&addr, &args)).await.unwrap();
        server.abort();
        assert_eq!(spans.load(Ordering::SeqCst), 200, "{compression}");
        assert_eq!(report.items_accepted, 200, "{compression}");
        let uncompressed = Payload::build(Signal::Traces, 10, Compression::None)
            .encoded()
            .len() as u64;
        assert!(
            report.request_bytes < uncompressed,
            "{compression} shrinks the request"
        );
    }
}

#[tokio::test]
async fn grpc_partial_success_is_subtracted() {
    let (addr, spans, server) = grpc_server(Reply::RejectOneSpan).await;
    let report = run(&plan(&addr, &["--count", "20", "--batch", "10"]))
        .await
        .unwrap();
    server.abort();
    assert_eq!(spans.load(Ordering::SeqCst), 200);
    assert_eq!(report.items_accepted, 180);
    assert_eq!(report.items_rejected, 20);
    assert_eq!(report.answers, [("OK".to_owned(), 20)].into());
}

#[tokio::test]
async fn grpc_errors_are_counted_by_status_name_and_the_run_goes_on() {
    for (code, name) in [
        (Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
        (Code::Unavailable, "UNAVAILABLE"),
        (Code::InvalidArgument, "INVALID_ARGUMENT"),
    ] {
        let (addr, _, server) = grpc_server(Reply::Fail(code)).await;
        let report = run(&plan(&addr, &["--count", "20", "--batch", "10"]))
            .await
            .unwrap();
        server.abort();
        assert_eq!(report.requests, 20);
        assert_eq!(report.items_accepted, 0);
        assert_eq!(report.answers, [(name.to_owned(), 20)].into());
    }
}

#[tokio::test]
async fn grpc_server_down_is_connect_errors_until_the_end() {
    let addr = closed_port().await.to_string();
    let report = run(&plan(&addr, &["--count", "12"])).await.unwrap();
    assert_eq!(report.answers, [("connect_error".to_owned(), 12)].into());
    assert_eq!(report.items_accepted, 0);
    assert_eq!(report.wire_bytes, 0);

    let report = run(&plan(&addr, &["--duration", "300ms", "--in-flight", "2"]))
        .await
        .unwrap();
    assert!(report.requests >= 2, "kept trying: {report:?}");
    assert_eq!(report.answers.keys().collect::<Vec<_>>(), ["connect_error"]);
    assert!(
        report.elapsed_secs >= 0.29 && report.elapsed_secs < 2.0,
        "{}",
        report.elapsed_secs
    );
}

#[tokio::test]
async fn grpc_slow_answers_are_timeouts() {
    let (addr, _, server) = grpc_server(Reply::Stall).await;
    let started = std::time::Instant::now();
    let report = run(&plan(&addr, &["--count", "3", "--timeout", "200ms"]))
        .await
        .unwrap();
    server.abort();
    assert_eq!(report.answers, [("timeout".to_owned(), 3)].into());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_timed_run_stops_on_time_and_counts_what_the_server_saw() {
    let (addr, spans, server) = grpc_server(Reply::Accept).await;
    let report = run(&plan(&addr, &["--duration", "300ms", "--batch", "10"]))
        .await
        .unwrap();
    server.abort();
    assert!(report.requests > 0);
    assert_eq!(spans.load(Ordering::SeqCst), report.items_accepted);
    assert!(
        report.elapsed_secs >= 0.3 && report.elapsed_secs < 2.0,
        "{}",
        report.elapsed_secs
    );
}

#[tokio::test]
async fn the_rate_cap_spaces_requests() {
    let (addr, spans, server) = grpc_server(Reply::Accept).await;
    let report = run(&plan(
        &addr,
        &["--rate", "20", "--duration", "500ms", "--batch", "10"],
    ))
    .await
    .unwrap();
    server.abort();
    // Starts at 0, 50, ..., 450 ms: ten, give or take one for a slow machine.
    assert!(
        (9..=11).contains(&report.requests),
        "{} requests",
        report.requests
    );
    assert_eq!(spans.load(Ordering::SeqCst), report.items_accepted);
}

/// What the test HTTP server saw, by signal, and the status it answers with.
#[derive(Clone)]
struct HttpSink {
    items: Arc<[AtomicU64; 3]>,
    status: StatusCode,
}

impl HttpSink {
    fn new(status: StatusCode) -> HttpSink {
        HttpSink {
            items: Arc::new(Default::default()),
            status,
        }
    }

    fn items(&self, signal: Signal) -> u64 {
        self.items[signal as usize].load(Ordering::SeqCst)
    }
}

/// A minimal OTLP/HTTP receiver: decompresses, decodes, counts items, answers protobuf.
async fn otlp_http(
    State(sink): State<HttpSink>,
    Path(signal): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    use std::io::Read;

    assert_eq!(headers[header::CONTENT_TYPE], "application/x-protobuf");
    let body = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap())
    {
        None => body.to_vec(),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        Some("zstd") => zstd::decode_all(&body[..]).unwrap(),
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    };
    let (signal, items, response) = match signal.as_str() {
        "traces" => {
            let request = ExportTraceServiceRequest::decode(&body[..]).unwrap();
            let spans = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len());
            (
                Signal::Traces,
                spans.sum::<usize>(),
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
        }
        "metrics" => {
            let request = ExportMetricsServiceRequest::decode(&body[..]).unwrap();
            let points = request
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|m| match m.data.as_ref().unwrap() {
                    Data::Gauge(g) => g.data_points.len(),
                    Data::Sum(s) => s.data_points.len(),
                    _ => 0,
                });
            (
                Signal::Metrics,
                points.sum(),
                ExportMetricsServiceResponse::default().encode_to_vec(),
            )
        }
        "logs" => {
            let request = ExportLogsServiceRequest::decode(&body[..]).unwrap();
            let records = request
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len());
            (
                Signal::Logs,
                records.sum(),
                ExportLogsServiceResponse::default().encode_to_vec(),
            )
        }
        other => panic!("unexpected path /v1/{other}"),
    };
    sink.items[signal as usize].fetch_add(items as u64, Ordering::SeqCst);
    if sink.status != StatusCode::OK {
        return (sink.status, Vec::new()).into_response();
    }
    ([(header::CONTENT_TYPE, "application/x-protobuf")], response).into_response()
}

/// Starts an OTLP/HTTP receiver; returns its base URL and its task.
async fn http_server(sink: HttpSink) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new()
        .route("/v1/{signal}", axum::routing::post(otlp_http))
        .with_state(sink);
    let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn http_server_sees_exactly_what_the_report_says_for_every_signal() {
    let sink = HttpSink::new(StatusCode::OK);
    let (url, server) = http_server(sink.clone()).await;
    for signal in ["traces", "metrics", "logs"] {
        let args = [
            "--protocol",
            "http",
            "--signal",
            signal,
            "--count",
            "20",
            "--batch",
            "10",
        ];
        let report = run(&plan(&url, &args)).await.unwrap();
        assert_eq!(report.items_accepted, 200, "{signal}");
        assert_eq!(report.answers, [("200".to_owned(), 20)].into(), "{signal}");
        assert_eq!(report.endpoint, format!("{url}/v1/{signal}"));
    }
    server.abort();
    for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        assert_eq!(sink.items(signal), 200, "{signal:?}");
    }
}

#[tokio::test]
async fn http_compressed_and_http2_requests_arrive_whole() {
    let sink = HttpSink::new(StatusCode::OK);
    let (url, server) = http_server(sink.clone()).await;
    let runs: [&[&str]; 3] = [
        &["--compression", "gzip"],
        &["--compression", "zstd", "--connections", "2"],
        &["--http2", "--connections", "2"],
    ];
    for extra in runs {
        let mut args = vec!["--protocol", "http", "--count", "20", "--batch", "10"];
        args.extend_from_slice(extra);
        let report = run(&plan(&url, &args)).await.unwrap();
        assert_eq!(report.items_accepted, 200, "{extra:?}");
        assert_eq!(report.answers, [("200".to_owned(), 20)].into(), "{extra:?}");
    }
    server.abort();
    assert_eq!(sink.items(Signal::Traces), 600);
}

#[tokio::test]
async fn http_errors_are_counted_by_status() {
    let sink = HttpSink::new(StatusCode::TOO_MANY_REQUESTS);
    let (url, server) = http_server(sink.clone()).await;
    let report = run(&plan(
        &url,
        &["--protocol", "http", "--count", "20", "--batch", "10"],
    ))
    .await
    .unwrap();
    server.abort();
    assert_eq!(report.answers, [("429".to_owned(), 20)].into());
    assert_eq!(report.items_accepted, 0);
    assert_eq!(
        sink.items(Signal::Traces),
        200,
        "the server got them all, and refused them"
    );
}

#[tokio::test]
async fn http_server_down_is_connect_errors() {
    let url = format!("http://{}", closed_port().await);
    let report = run(&plan(&url, &["--protocol", "http", "--count", "12"]))
        .await
        .unwrap();
    assert_eq!(report.answers, [("connect_error".to_owned(), 12)].into());
}
