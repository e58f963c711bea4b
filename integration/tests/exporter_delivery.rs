//! How an exporter treats a bad link and a difficult destination.
//!
//! - A cut WAN link (a [`TcpProxy`] between a front outpost and a sink outpost): what is sent during the
//!   cut arrives after the restore, nothing lost; while cut the circuit breaker is open and the front uses
//!   almost no CPU; after the restore the drain keeps to `max_bytes_per_second`, measured on the bytes the
//!   proxy forwards.
//! - A slow link (latency added by the proxy): requests overlap, up to `num_consumers` in flight.
//! - A scripted HTTP destination ([`FaultSink`]): Retry-After is honoured; a 400 is dropped and counted,
//!   not retried; a 401 is retried `auth_failure_attempts` times, then dropped; a 413 splits the batch
//!   until the halves fit.
//!
//! Run with `--nocapture` to see the figures.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use outpost_integration::delivery::Arrivals;
use outpost_integration::fault_sink::{FaultSink, Reply};
use outpost_integration::proxy::TcpProxy;
use outpost_integration::{free_port, gen, wait_for, Agent};
use prost::Message;

const SPANS: u32 = 20;
/// Poorly compressible characters per span: about 21 KB per request.
const NOISE: usize = 1000;

/// A front outpost whose only exporter is `exporter` (YAML under `exporters:`, named `otlp` or
/// `otlphttp`).
fn front_config(grpc: u16, exporter_name: &str, exporter: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
{exporter}
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
      exporters: [{exporter_name}]
"#
    )
}

async fn send(
    client: &mut TraceServiceClient<tonic::transport::Channel>,
    req: ExportTraceServiceRequest,
) {
    client
        .export(req)
        .await
        .expect("the front accepts the request");
}

const RATE: u64 = 100 * 1024;
const BURST: u64 = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_costs_no_cpu_and_the_drain_keeps_to_the_bandwidth_cap() {
    let sink_grpc = free_port();
    let sink = Agent::start(&outpost_integration::file_sink_config(sink_grpc));
    let link = TcpProxy::start(sink_grpc);
    let grpc = free_port();
    let exporter = format!(
        r#"  otlp:
    endpoint: 127.0.0.1:{port}
    # A cut resets connections at once, so the breaker never waits on this; during the drain a
    # request a loaded sink answers late must not count as a failure that reopens the breaker.
    timeout: 10s
    compression: none
    max_bytes_per_second: {RATE}
    burst_bytes: {BURST}
    sending_queue:
      num_consumers: 2
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
    circuit_breaker:
      failure_threshold: 3
      initial_interval: 500ms
      max_interval: 2s"#,
        port = link.port()
    );
    let front = Agent::start(&front_config(grpc, "otlp", &exporter));
    let mut client = TraceServiceClient::new(gen::grpc_channel(grpc).await);
    let mut arrivals = Arrivals::new(&sink.dir().join("traces.jsonl"));
    let mut acked = BTreeSet::new();

    // The link works.
    send(
        &mut client,
        gen::noisy_traces(SPANS as usize, "cut", 0, NOISE),
    )
    .await;
    acked.insert(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while arrivals.distinct() < SPANS as usize {
        assert!(
            Instant::now() < deadline,
            "the first request never reached the sink"
        );
        arrivals.poll();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Cut it, and keep sending: the front acknowledges from its disk queue.
    link.cut();
    let requests = 80u32;
    for seed in 1..=requests {
        send(
            &mut client,
            gen::noisy_traces(SPANS as usize, "cut", seed, NOISE),
        )
        .await;
        acked.insert(seed);
    }
    let open = r#"outpost_exporter_circuit_open{exporter="otlp",signal="traces"}"#;
    wait_for(
        Duration::from_secs(20),
        "the circuit breaker to open",
        || (front.metric(open) == 1.0).then_some(()),
        || front.metrics_text(),
    );

    // While the breaker is open the front idles: a probe every 0.5–2 s, nothing else.
    let cpu0 = front.cpu_seconds();
    let refused0 = link.refused();
    let idle = Duration::from_secs(5);
    tokio::time::sleep(idle).await;
    let cpu = front.cpu_seconds() - cpu0;
    let probes = link.refused() - refused0;
    eprintln!("cut link: {cpu:.3} CPU s in {idle:?}, {probes} connection attempts");
    assert!(
        cpu < 0.25,
        "the front used {cpu:.3} CPU s in {idle:?} with the link cut"
    );
    assert!(
        probes <= 8,
        "{probes} connection attempts in {idle:?}: the breaker should probe at most every 0.5–2 s"
    );
    assert_eq!(front.metric(open), 1.0);

    // Restore: everything arrives, and the drain keeps to the cap.
    let before = link.upstream_bytes();
    link.restore();
    let restored = Instant::now();
    let mut first_byte: Option<Instant> = None;
    let expected = (requests + 1) as usize * SPANS as usize;
    let deadline = Instant::now() + Duration::from_secs(90);
    while arrivals.distinct() < expected {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} spans arrived after the restore",
            arrivals.distinct()
        );
        if first_byte.is_none() && link.upstream_bytes() > before {
            first_byte = Some(Instant::now());
        }
        arrivals.poll();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = Instant::now();
    let first_byte = first_byte.unwrap_or(restored);
    let bytes = link.upstream_bytes() - before;
    let secs = done.duration_since(first_byte).as_secs_f64();
    let rate = bytes as f64 / secs;
    eprintln!(
        "drain: {bytes} bytes in {secs:.2} s = {:.0} B/s against a cap of {RATE} B/s ({:+.1}%); first byte {:.2} s after the restore",
        rate,
        (rate / RATE as f64 - 1.0) * 100.0,
        first_byte.duration_since(restored).as_secs_f64()
    );
    // The burst and the requests already in flight may go out at once on top of the rate.
    let allowance = (BURST + 2 * 22_000) as f64 / secs;
    assert!(
        rate <= RATE as f64 * 1.10 + allowance,
        "the drain used {rate:.0} B/s, over the {RATE} B/s cap by more than 10%"
    );
    assert!(
        rate >= RATE as f64 * 0.7,
        "the drain used only {rate:.0} B/s of {RATE} B/s"
    );
    let report = arrivals.report(&acked, SPANS);
    eprintln!("{report}");
    assert!(report.lost.is_empty(), "lost: {report}");
    wait_for(
        Duration::from_secs(10),
        "the breaker to close",
        || (front.metric(open) == 0.0).then_some(()),
        || front.metrics_text(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_slow_link_requests_overlap() {
    let sink_grpc = free_port();
    let sink = Agent::start(&outpost_integration::file_sink_config(sink_grpc));
    let link = TcpProxy::start(sink_grpc);
    link.set_latency(Duration::from_millis(150));
    let grpc = free_port();
    let exporter = format!(
        r#"  otlp:
    endpoint: 127.0.0.1:{port}
    sending_queue:
      num_consumers: 4"#,
        port = link.port()
    );
    let front = Agent::start(&front_config(grpc, "otlp", &exporter));
    let mut client = TraceServiceClient::new(gen::grpc_channel(grpc).await);
    let requests = 40u32;
    for seed in 0..requests {
        send(&mut client, gen::traces(SPANS as usize, "slow", seed)).await;
    }
    let mut arrivals = Arrivals::new(&sink.dir().join("traces.jsonl"));
    let in_flight = r#"outpost_exporter_in_flight_requests{exporter="otlp",signal="traces"}"#;
    let mut most = 0.0f64;
    let start = Instant::now();
    while arrivals.distinct() < (requests * SPANS) as usize {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} spans arrived",
            arrivals.distinct()
        );
        most = most.max(front.metric(in_flight));
        arrivals.poll();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "{requests} requests over a 150 ms link in {:.2} s, up to {most} in flight",
        start.elapsed().as_secs_f64()
    );
    assert!(
        most >= 2.0,
        "requests never overlapped (at most {most} in flight)"
    );
}

fn http_exporter(url: &str, extra: &str) -> String {
    format!(
        r#"  otlphttp:
    endpoint: {url}
    compression: none
    sending_queue:
      num_consumers: 1
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 200ms
      randomization_factor: 0
{extra}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let sink = FaultSink::start(|_, i| match i {
        0 => Reply::status(429).header("Retry-After", "1"),
        1 => Reply::status(503).header("Retry-After", "2"),
        _ => Reply::status(200),
    });
    let grpc = free_port();
    let front = Agent::start(&front_config(
        grpc,
        "otlphttp",
        &http_exporter(&sink.url(), ""),
    ));
    let mut client = TraceServiceClient::new(gen::grpc_channel(grpc).await);
    send(&mut client, gen::traces(3, "retry-after", 1)).await;
    let seen = tokio::task::spawn_blocking(move || {
        let seen = sink.wait_for_requests(3, Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            sink.seen().len(),
            3,
            "delivered on the third try, then no more requests"
        );
        seen
    })
    .await
    .unwrap();
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].at - w[0].at).collect();
    eprintln!("gaps between attempts: {gaps:?}");
    assert!(
        gaps[0] >= Duration::from_millis(950),
        "Retry-After: 1 not honoured: {gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(1950),
        "Retry-After: 2 not honoured: {gaps:?}"
    );
    assert_eq!(seen[0].body, seen[2].body, "the same batch is sent again");
    let retries = r#"outpost_exporter_send_retries_total{exporter="otlphttp",signal="traces""#;
    assert_eq!(
        front.metric(&format!("{retries},reason=\"http_429\"}}")),
        1.0
    );
    assert_eq!(
        front.metric(&format!("{retries},reason=\"http_503\"}}")),
        1.0
    );
    front.await_metric(
        r#"outpost_exporter_sent_items_total{exporter="otlphttp"}"#,
        3.0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_refusals_are_dropped_and_counted_not_retried_forever() {
    // Requests with 5 spans are refused as bad (400); requests with 7 spans as unauthorized (401).
    let sink = FaultSink::start(|seen, _| {
        let req = ExportTraceServiceRequest::decode(&seen.decoded_body()[..]).unwrap();
        match req.resource_spans[0].scope_spans[0].spans.len() {
            5 => Reply::status(400),
            _ => Reply::status(401),
        }
    });
    let grpc = free_port();
    let exporter = http_exporter(&sink.url(), "    # a credential that never works\n");
    let exporter = exporter.replace(
        "      randomization_factor: 0",
        "      randomization_factor: 0\n      auth_failure_attempts: 3",
    );
    let front = Agent::start(&front_config(grpc, "otlphttp", &exporter));
    let mut client = TraceServiceClient::new(gen::grpc_channel(grpc).await);
    for seed in 0..3 {
        send(&mut client, gen::traces(5, "bad", seed)).await;
    }
    send(&mut client, gen::traces(7, "unauthorized", 9)).await;
    let failed = |reason: &str| {
        front.metric(&format!(
            r#"outpost_exporter_send_failed_items_total{{exporter="otlphttp",signal="traces",reason="{reason}"}}"#
        ))
    };
    wait_for(
        Duration::from_secs(20),
        "the refused items to be counted",
        || (failed("http_400") == 15.0 && failed("http_401") == 7.0).then_some(()),
        || front.metrics_text(),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sink.seen().len(),
        3 + 3,
        "each 400 sent once, the 401 batch three times"
    );
    let lag = r#"outpost_exporter_queue_lag_records{exporter="otlphttp"}"#;
    wait_for(
        Duration::from_secs(5),
        "dropped records to stop pinning the queue",
        || (front.metric(lag) == 0.0).then_some(()),
        || front.metrics_text(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_too_large_is_split_until_it_fits() {
    const LIMIT: usize = 3000;
    let sink = FaultSink::start(|seen, _| {
        if seen.decoded_body().len() > LIMIT {
            Reply::status(413)
        } else {
            Reply::status(200)
        }
    });
    let grpc = free_port();
    let front = Agent::start(&front_config(
        grpc,
        "otlphttp",
        &http_exporter(&sink.url(), ""),
    ));
    let mut client = TraceServiceClient::new(gen::grpc_channel(grpc).await);
    let spans = 16;
    let request = gen::noisy_traces(spans, "large", 3, 600);
    assert!(
        request.encoded_len() > 2 * LIMIT,
        "the request must need splitting more than once"
    );
    send(&mut client, request).await;
    let sent = r#"outpost_exporter_sent_items_total{exporter="otlphttp"}"#;
    wait_for(
        Duration::from_secs(20),
        "every span delivered in pieces",
        || (front.metric(sent) == spans as f64).then_some(()),
        || front.metrics_text(),
    );
    let accepted: Vec<usize> = sink
        .seen()
        .iter()
        .filter(|s| s.decoded_body().len() <= LIMIT)
        .map(|s| {
            ExportTraceServiceRequest::decode(&s.decoded_body()[..])
                .unwrap()
                .resource_spans[0]
                .scope_spans[0]
                .spans
                .len()
        })
        .collect();
    eprintln!("accepted pieces (spans each): {accepted:?}");
    assert_eq!(
        accepted.iter().sum::<usize>(),
        spans,
        "every span delivered exactly once"
    );
    assert!(accepted.len() >= 3);
}
