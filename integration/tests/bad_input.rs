//! Hostile and broken input against one running outpost: every bad request gets the answer the OTLP
//! specification asks for (status, body encoding, a message saying what was wrong), none of them costs
//! memory out of proportion, each is counted in `/metrics`, and the agent keeps serving valid requests
//! on both transports afterwards.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use outpost_integration::gen::{self, LOGS_PATH, TRACES_PATH};
use outpost_integration::otlp_json::{self, Signal};
use outpost_integration::{free_port, wait_for_async, Agent};
use prost::Message;
use tonic::codec::CompressionEncoding;

/// `google.rpc.Status`, the body of an OTLP/HTTP error response (details are not needed here).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

const INVALID_ARGUMENT: i32 = 3;
const MAX_BODY: usize = 64 * 1024;
const MAX_DECOMPRESSED: usize = 4 * 1024 * 1024;

/// Protobuf that cannot decode: field 1 (resource_spans) claims a length far beyond the buffer.
const BAD_PROTOBUF: &[u8] = b"\x0a\xff\xff\xff\xff\x0f\x01\x02";

fn config(grpc: u16, http: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        max_recv_msg_size_mib: 4
      http:
        endpoint: 127.0.0.1:{http}
        max_request_body_size: 64KiB
        max_decompressed_body_size: 4MiB
exporters:
  file/traces:
    path: "@DIR@/traces.jsonl"
  file/logs:
    path: "@DIR@/logs.jsonl"
extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file/traces]
    logs:
      receivers: [otlp]
      exporters: [file/logs]
"#
    )
}

struct Target {
    agent: Agent,
    grpc: u16,
    http: u16,
    client: reqwest::Client,
}

impl Target {
    fn start() -> Target {
        let (grpc, http) = (free_port(), free_port());
        Target {
            agent: Agent::start(&config(grpc, http)),
            grpc,
            http,
            client: outpost_integration::http_client_builder()
                .timeout(Duration::from_secs(30))
                .no_proxy()
                .build()
                .unwrap(),
        }
    }

    async fn post(
        &self,
        path: &str,
        content_type: &str,
        content_encoding: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, String, reqwest::header::HeaderMap, Vec<u8>) {
        let mut req = self
            .client
            .post(format!("http://127.0.0.1:{}{path}", self.http))
            .header("content-type", content_type)
            .body(body);
        if let Some(enc) = content_encoding {
            req = req.header("content-encoding", enc);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = resp.bytes().await.unwrap().to_vec();
        (status, ct, headers, body)
    }

    fn metric(&self, q: &str) -> f64 {
        self.agent.metric(q)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_precise_answers_and_the_agent_keeps_serving() {
    let t = Target::start();

    // --- OTLP/HTTP -------------------------------------------------------------------------------------

    // Malformed protobuf: 400, a google.rpc.Status in protobuf saying what failed to decode.
    let (status, ct, _, body) = t
        .post(
            "/v1/traces",
            "application/x-protobuf",
            None,
            BAD_PROTOBUF.to_vec(),
        )
        .await;
    assert_eq!(status, 400, "malformed protobuf");
    assert_eq!(
        ct, "application/x-protobuf",
        "the error is encoded like the request"
    );
    let rpc = RpcStatus::decode(&body[..]).expect("a google.rpc.Status protobuf body");
    assert_eq!(rpc.code, INVALID_ARGUMENT, "{rpc:?}");
    assert!(
        rpc.message.contains("protobuf") && rpc.message.len() > "malformed OTLP protobuf: ".len(),
        "the message says what was wrong: {rpc:?}"
    );

    // Malformed JSON: 400, a JSON Status.
    let (status, ct, _, body) = t
        .post(
            "/v1/logs",
            "application/json",
            None,
            br#"{"resourceLogs": [ {"#.to_vec(),
        )
        .await;
    assert_eq!(status, 400, "malformed JSON");
    assert!(
        ct.starts_with("application/json"),
        "JSON error for a JSON request: {ct}"
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "a JSON Status body ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    assert_eq!(json["code"], INVALID_ARGUMENT, "{json}");
    let message = json["message"].as_str().unwrap_or("");
    assert!(
        message.contains("JSON"),
        "the message says what was wrong: {json}"
    );

    // JSON that parses but is not OTLP (a number where a list belongs): also 400.
    let (status, _, _, _) = t
        .post(
            "/v1/traces",
            "application/json",
            None,
            br#"{"resourceSpans": 5}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 400, "JSON of the wrong shape");

    // Unsupported Content-Type: 415.
    let (status, _, _, _) = t
        .post("/v1/traces", "text/plain", None, b"hello".to_vec())
        .await;
    assert_eq!(status, 415, "unsupported content type");

    // A body over max_request_body_size: 413, refused on the wire size alone.
    let (status, _, _, body) = t
        .post(
            "/v1/traces",
            "application/x-protobuf",
            None,
            vec![0x0a; MAX_BODY + 16 * 1024],
        )
        .await;
    assert_eq!(status, 413, "body over max_request_body_size");
    let rpc = RpcStatus::decode(&body[..]).expect("a google.rpc.Status protobuf body");
    assert!(rpc.message.contains("max_request_body_size"), "{rpc:?}");

    // A gzip bomb: 50 MiB of zeros in ~50 KiB, under the wire limit but far over the decompressed one.
    // It must be refused quickly and without inflating it in memory.
    let bomb = gen::gzip_bomb(50 << 20);
    assert!(
        bomb.len() < MAX_BODY,
        "the bomb ({} bytes) must pass the wire limit",
        bomb.len()
    );
    let rss_before = t.agent.rss_kib();
    let started = Instant::now();
    let (status, _, _, body) = t
        .post(
            "/v1/traces",
            "application/x-protobuf",
            Some("gzip"),
            bomb.clone(),
        )
        .await;
    let took = started.elapsed();
    let rss_after = t.agent.rss_kib();
    assert_eq!(status, 413, "gzip bomb");
    let rpc = RpcStatus::decode(&body[..]).expect("a google.rpc.Status protobuf body");
    assert!(
        rpc.message.contains("max_decompressed_body_size")
            && rpc.message.contains(&MAX_DECOMPRESSED.to_string()),
        "the message names the limit and its value: {rpc:?}"
    );
    assert!(took < Duration::from_secs(5), "refused in {took:?}");
    assert!(
        rss_after.saturating_sub(rss_before) < 32 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB on a gzip bomb"
    );

    // --- OTLP/gRPC -------------------------------------------------------------------------------------

    let channel = gen::grpc_channel(t.grpc).await;
    let err = gen::grpc_raw(channel.clone(), TRACES_PATH, BAD_PROTOBUF.to_vec(), None)
        .await
        .expect_err("malformed protobuf over gRPC must fail");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("protobuf"),
        "the message says what was wrong: {err:?}"
    );

    // A gRPC message inflating past max_recv_msg_size_mib: refused, bounded, the agent unharmed.
    let rss_before = t.agent.rss_kib();
    let err = gen::grpc_raw(
        channel.clone(),
        LOGS_PATH,
        vec![0u8; 50 << 20],
        Some(CompressionEncoding::Gzip),
    )
    .await
    .expect_err("a gRPC gzip bomb must fail");
    let rss_after = t.agent.rss_kib();
    assert!(
        matches!(
            err.code(),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange | tonic::Code::InvalidArgument
        ),
        "{err:?}"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 32 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB on a gRPC gzip bomb"
    );

    // --- Still serving ---------------------------------------------------------------------------------

    let (status, ct, _, body) = t
        .post(
            "/v1/traces",
            "application/x-protobuf",
            None,
            gen::traces(10, "after-http", 1).encode_to_vec(),
        )
        .await;
    assert_eq!(status, 200, "a valid protobuf request after the bad ones");
    assert_eq!(ct, "application/x-protobuf");
    let resp = ExportTraceServiceResponse::decode(&body[..]).expect("an export response");
    assert!(resp.partial_success.is_none(), "{resp:?}");

    let (status, _, _, body) = t
        .post(
            "/v1/logs",
            "application/json",
            None,
            serde_json::to_vec(&gen::logs(5, "after-json")).unwrap(),
        )
        .await;
    assert_eq!(
        status,
        200,
        "a valid JSON request: {}",
        String::from_utf8_lossy(&body)
    );

    let mut client = TraceServiceClient::new(channel);
    client
        .export(gen::traces(7, "after-grpc", 2))
        .await
        .expect("a valid gRPC request after the bad ones");

    let dir = t.agent.dir().to_path_buf();
    wait_for_async(
        Duration::from_secs(10),
        "the valid requests in the files",
        || {
            (otlp_json::count_items(&dir.join("traces.jsonl"), Signal::Traces) == 17
                && otlp_json::count_items(&dir.join("logs.jsonl"), Signal::Logs) == 5)
                .then_some(())
        },
        || {
            format!(
                "traces {}, logs {}",
                otlp_json::count_items(&dir.join("traces.jsonl"), Signal::Traces),
                otlp_json::count_items(&dir.join("logs.jsonl"), Signal::Logs)
            )
        },
    )
    .await;

    // --- Counted ---------------------------------------------------------------------------------------

    let text = t.agent.metrics_text();
    let m = |q: &str| outpost_integration::sum_metric(&text, q);
    let refused = "outpost_receiver_refused_requests_total";
    assert_eq!(
        m(&format!(
            r#"{refused}{{transport="http",reason="malformed"}}"#
        )),
        3.0,
        "bad protobuf, bad JSON, JSON of the wrong shape\n{text}"
    );
    assert_eq!(
        m(&format!(
            r#"{refused}{{transport="http",reason="too_large"}}"#
        )),
        2.0,
        "the oversized body and the gzip bomb\n{text}"
    );
    assert_eq!(
        m(&format!(
            r#"{refused}{{transport="http",reason="unsupported_content_type"}}"#
        )),
        1.0,
        "{text}"
    );
    assert_eq!(
        m(r#"outpost_receiver_accepted_items_total{transport="http",signal="traces"}"#),
        10.0
    );
    assert_eq!(
        m(r#"outpost_receiver_accepted_items_total{transport="http",signal="logs"}"#),
        5.0
    );
    assert_eq!(
        m(r#"outpost_receiver_accepted_items_total{transport="grpc",signal="traces"}"#),
        7.0
    );
}

/// A gRPC request that fails to decode (or to decompress within max_recv_msg_size_mib) is counted in
/// outpost's receiver metrics like its HTTP counterpart, so malformed gRPC traffic shows in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_grpc_requests_are_counted() {
    let t = Target::start();
    let channel = gen::grpc_channel(t.grpc).await;
    let err = gen::grpc_raw(channel.clone(), TRACES_PATH, BAD_PROTOBUF.to_vec(), None)
        .await
        .expect_err("malformed");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let _ = gen::grpc_raw(
        channel,
        LOGS_PATH,
        vec![0u8; 8 << 20],
        Some(CompressionEncoding::Gzip),
    )
    .await;
    let refused = "outpost_receiver_refused_requests_total";
    assert_eq!(
        t.metric(&format!(
            r#"{refused}{{transport="grpc",reason="malformed"}}"#
        )),
        1.0
    );
    assert_eq!(
        t.metric(&format!(
            r#"{refused}{{transport="grpc",reason="too_large"}}"#
        )),
        1.0
    );
}
