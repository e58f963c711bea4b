//! The agent's life: a graceful shutdown drains what the pipelines hold and answers the clients waiting
//! on it; a second agent cannot take a data directory in use; a destination that stops answering pushes
//! back to the clients (RESOURCE_EXHAUSTED / 429 with Retry-After) instead of growing memory.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use outpost_integration::otlp_json::{self, Signal};
use outpost_integration::{free_port, gen, wait_for_async, Agent};
use prost::Message;

fn sink_config(grpc: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  file:
    path: "@DIR@/traces.jsonl"
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
      exporters: [file]
"#
    )
}

/// A front whose batch processor holds everything (1 h timeout, a size never reached) until shutdown.
fn holding_front_config(grpc: u16, sink_grpc: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  batch:
    send_batch_size: 100000
    timeout: 1h
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink_grpc}
    tls:
      insecure: true
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
      processors: [batch]
      exporters: [otlp]
"#
    )
}

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// SIGTERM while a client waits on data held in the batch processor: the drain must flush the batch to
/// the exporter, which delivers it, which answers the waiting client; then the process exits 0, well
/// within its shutdown deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_held_batches_and_answers_waiting_clients() {
    held_batch_then_sigterm(true).await;
}

/// SIGTERM with 300 spans held in the batch processor whose client has given up waiting (cancelled its
/// call and closed the connection): the drain still flushes them to the destination, and the process
/// exits 0 well within its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_held_batches_to_the_destination() {
    held_batch_then_sigterm(false).await;
}

async fn held_batch_then_sigterm(client_waits: bool) {
    let sink_grpc = free_port();
    let sink = Agent::start(&sink_config(sink_grpc));
    let front_grpc = free_port();
    let mut front = Agent::spawn(
        &holding_front_config(front_grpc, sink_grpc),
        None,
        &["--shutdown-timeout", "10s"],
    );
    front.wait_ready();

    // The receiver answers only once the data has left the pipeline, so this call stays pending while
    // the batch processor holds the spans.
    let channel = gen::grpc_channel(front_grpc).await;
    let pending = tokio::spawn(async move {
        TraceServiceClient::new(channel)
            .export(gen::traces(300, "drain", 7))
            .await
    });
    wait_for_async(
        Duration::from_secs(10),
        "the 300 spans inside the batch processor",
        || {
            (front.metric(r#"outpost_processor_incoming_items_total{processor="batch"}"#) == 300.0)
                .then_some(())
        },
        || front.metrics_text(),
    )
    .await;
    assert!(
        !pending.is_finished(),
        "the client is answered only after the data leaves the pipeline"
    );
    assert_eq!(
        otlp_json::count_items(&sink.dir().join("traces.jsonl"), Signal::Traces),
        0,
        "nothing leaves before the batch timeout or shutdown"
    );
    let pending = if client_waits {
        Some(pending)
    } else {
        // Cancelling the task drops the call and the channel with it: the connection closes.
        pending.abort();
        let _ = pending.await;
        None
    };

    let stopping = Instant::now();
    front.sigterm();
    // Blocking is fine here: the test body runs on the runtime's block_on thread, the client task on
    // its workers.
    let status = front.wait_exit(SHUTDOWN_TIMEOUT + Duration::from_secs(10));
    let took = stopping.elapsed();
    let answer = match pending {
        Some(pending) => Some(
            tokio::time::timeout(Duration::from_secs(5), pending)
                .await
                .expect("the pending call completes once the agent is gone")
                .expect("the client task did not panic"),
        ),
        None => None,
    };
    let path = sink.dir().join("traces.jsonl");
    let at_sink = || otlp_json::count_items(&path, Signal::Traces);
    let settle = Instant::now() + Duration::from_secs(10);
    while at_sink() < 300 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The first promise: a client told "accepted" never loses its data.
    if let Some(Ok(_)) = &answer {
        assert_eq!(
            at_sink(),
            300,
            "the client was told its 300 spans were accepted, but the destination has {}: acknowledged data \
             was lost\n{}",
            at_sink(),
            front.log()
        );
    }
    assert!(status.success(), "exit status {status}\n{}", front.log());
    assert!(
        took < SHUTDOWN_TIMEOUT,
        "a drain with nothing blocking it must finish well within the {SHUTDOWN_TIMEOUT:?} deadline, took {took:?}\n{}",
        front.log()
    );
    assert!(
        !front.log().contains("deadline passed"),
        "nothing was aborted:\n{}",
        front.log()
    );
    if let Some(answer) = answer {
        let response = answer
            .expect("the drain delivered the spans, so the client is told they were accepted");
        assert!(response.get_ref().partial_success.is_none());
    }
    let spans = otlp_json::items(Signal::Traces, &otlp_json::read_requests(&path));
    assert_eq!(
        spans.len(),
        300,
        "each span exactly once at the destination"
    );
}

/// The data directory holds the queue: two agents on one would corrupt it, so the second refuses to
/// start, says why (naming the directory), and the first keeps running.
#[test]
fn a_second_agent_on_the_same_data_directory_refuses_to_start() {
    let first = Agent::start(&sink_config(free_port()));
    let mut second = Agent::spawn(&sink_config(free_port()), Some(first.data_dir()), &[]);
    let status = second.wait_exit(Duration::from_secs(15));
    assert!(!status.success(), "the second agent must not run: {status}");
    assert!(
        status.code().is_some(),
        "it exits by itself, with an error code: {status}"
    );
    let log = second.log();
    let dir = first.data_dir().display().to_string();
    assert!(
        log.contains(&dir),
        "the error names the directory {dir}:\n{log}"
    );
    assert!(
        log.contains("in use"),
        "the error says it is in use:\n{log}"
    );
    assert_eq!(
        outpost_integration::http_get(first.admin_addr(), "/readyz")
            .expect("the first agent still answers")
            .status,
        200
    );
}

fn pressured_front_config(grpc: u16, http: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
  memory_limiter:
    limit_mib: 1
  batch:
    timeout: 1h
    send_batch_size: 1000000
exporters:
  debug: {{}}
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
      processors: [memory_limiter, batch]
      exporters: [debug]
"#
    )
}

/// A pipeline that holds data in memory (a batch processor waiting an hour for a batch it never fills)
/// spends the memory_limiter's budget: once it is gone, clients are refused with the retryable codes
/// (gRPC RESOURCE_EXHAUSTED, HTTP 429 + Retry-After), each refusal counted with its reason, and the memory
/// held stays at the limit. (A slow destination does not do this: behind the disk queue it only makes
/// its cursor lag; the queue's watermarks push back then, see outage.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_held_in_the_pipeline_pushes_back_to_clients() {
    let (grpc, http) = (free_port(), free_port());
    let mut front = Agent::spawn(
        &pressured_front_config(grpc, http),
        None,
        // The batch holds its clients for an hour; do not let the teardown wait for it.
        &["--shutdown-timeout", "1s"],
    );
    front.wait_ready();

    // ~30 KiB per request: the 1 MiB limit (0.8 MiB after the default spike headroom) holds a few dozen.
    let request = gen::traces(300, "pressure", 1);
    let request_bytes = request.encoded_len();
    let channel = gen::grpc_channel(grpc).await;
    let mut calls = tokio::task::JoinSet::new();
    let mut refused = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    'fire: for i in 0..400u32 {
        let mut client = TraceServiceClient::new(channel.clone());
        let mut req = request.clone();
        req.resource_spans[0].scope_spans[0].spans[0].name = format!("request-{i}");
        calls.spawn(async move { client.export(req).await });
        // Collect whatever has finished; an accepted call may stay pending (its data is held upstream
        // of the stalled exporter), a refused one returns at once.
        while let Some(done) = calls.try_join_next() {
            if let Err(status) = done.expect("the call task did not panic") {
                refused = Some((i, status));
                break 'fire;
            }
        }
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(Instant::now() < deadline, "no refusal within 30 s");
    }
    if refused.is_none() {
        // The last few may still be in flight: give them a bounded moment to resolve.
        let until = Instant::now() + Duration::from_secs(10);
        while refused.is_none() && Instant::now() < until {
            match tokio::time::timeout(Duration::from_millis(200), calls.join_next()).await {
                Ok(Some(Ok(Err(status)))) => refused = Some((400, status)),
                Ok(None) => break,
                _ => {}
            }
        }
    }
    let (after, status) = refused.unwrap_or_else(|| {
        panic!(
            "400 requests of {request_bytes} bytes held by a batch processor behind a 1 MiB \
             memory_limiter, and none refused\n{}",
            front.metrics_text()
        )
    });
    assert_eq!(
        status.code(),
        tonic::Code::ResourceExhausted,
        "refused after {after} requests with the retryable pressure code: {status:?}"
    );

    // Over HTTP while the pressure lasts: 429 with a Retry-After the client can honour.
    let client = outpost_integration::http_client_builder()
        .no_proxy()
        .build()
        .unwrap();
    let resp = client
        .post(format!("http://127.0.0.1:{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("an answer, not a hang: the refusal is immediate");
    assert_eq!(resp.status().as_u16(), 429, "HTTP under pressure");
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|s| s > 0),
        "Retry-After in seconds: {:?}",
        resp.headers()
    );

    let text = front.metrics_text();
    let refused_items = outpost_integration::sum_metric(
        &text,
        r#"outpost_receiver_refused_items_total{signal="traces",reason="memory_limit"}"#,
    );
    assert!(
        refused_items >= 600.0,
        "both refusals counted per item ({refused_items})\n{text}"
    );
    assert!(
        outpost_integration::sum_metric(
            &text,
            r#"outpost_receiver_refused_items_total{transport="http",reason="memory_limit"}"#
        ) >= 300.0,
        "{text}"
    );
    let inflight = outpost_integration::sum_metric(&text, "outpost_memory_limiter_inflight_bytes");
    let limit = outpost_integration::sum_metric(&text, "outpost_memory_limiter_limit_bytes");
    assert!(
        inflight > 0.0 && inflight <= limit + request_bytes as f64,
        "memory held stays at the limit: {inflight} in flight, limit {limit}\n{text}"
    );
    calls.abort_all();
}

/// The admin endpoint an orchestrator probes: alive, ready, and metrics in OpenMetrics text.
#[test]
fn the_admin_endpoint_serves_health_readiness_and_metrics() {
    let agent = Agent::start(&sink_config(free_port()));
    let admin = agent.admin_addr();
    let get = |path: &str| {
        outpost_integration::http_get(admin, path).expect("the admin endpoint answers")
    };
    assert_eq!(get("/healthz").status, 200);
    assert_eq!(get("/readyz").status, 200);
    // health_check's default extra path, as the OpenTelemetry Collector serves it.
    assert_eq!(get("/").status, 200);
    assert_eq!(get("/no-such-page").status, 404);
    let metrics = get("/metrics");
    assert_eq!(metrics.status, 200);
    let content_type = metrics
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(
        metrics.body.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF:\n{}",
        metrics.body
    );
    assert_eq!(
        outpost_integration::sum_metric(
            &metrics.body,
            &format!(
                r#"outpost_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0,
        "{}",
        metrics.body
    );
}
