//! The WAN link is down under load: the disk queue holds what clients send, pushes back once it crosses
//! its high watermark, and delivers everything once the link is back.
//!
//! A "front" outpost forwards over a [`TcpProxy`] to a "sink" outpost that writes to a file. The proxy
//! starts down (connections refused). Clients send poorly compressible spans until the front's small
//! queue (max_size 4 MiB, high watermark 2 MiB, low 1 MiB) is under pressure: the queue grows, the
//! exporter lags and retries, and clients are refused with RESOURCE_EXHAUSTED (gRPC) and 429 + Retry-After (HTTP). Then the link comes
//! back: the queue drains to empty, the pressure ends, new requests are accepted again, and every span a
//! client saw acknowledged is at the sink. A second test breaks the link the other way (connections
//! accepted, then reset) and checks that nothing acknowledged is dropped then either.
//!
//! Run with `--nocapture` to see the figures.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use outpost_integration::delivery::Arrivals;
use outpost_integration::proxy::TcpProxy;
use outpost_integration::{free_port, gen, wait_for_async, Agent};
use prost::Message;

const SPANS: u32 = 20;
/// Characters of pseudo-random noise per span: ~20 KB per request, ~15 KB once zstd-compressed.
const NOISE: usize = 1000;
const SENDERS: u32 = 4;
const MAX_SIZE: u64 = 4 << 20;
const HIGH_WATERMARK: u64 = 2 << 20;

fn front_config(grpc: u16, http: u16, destination: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  otlp:
    endpoint: 127.0.0.1:{destination}
    timeout: 2s
extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
  max_size: 4MiB
  high_watermark: 2MiB
  low_watermark: 1MiB
  overflow: block
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
"#
    )
}

#[derive(Default)]
struct Load {
    acked: Mutex<BTreeSet<u32>>,
    exhausted: AtomicU64,
    other_failures: Mutex<Vec<String>>,
    next_seed: AtomicU32,
    stop: AtomicBool,
}

/// Sends fresh requests until told to stop; records OK answers and counts RESOURCE_EXHAUSTED ones (a
/// refused request is not retried: it was never acknowledged, so the test does not count it).
async fn sender(port: u16, load: Arc<Load>) {
    let channel = gen::grpc_channel_lazy(port, Duration::from_secs(10));
    let mut client = TraceServiceClient::new(channel);
    while !load.stop.load(Ordering::SeqCst) {
        let seed = load.next_seed.fetch_add(1, Ordering::SeqCst);
        match client
            .export(gen::noisy_traces(SPANS as usize, "outage", seed, NOISE))
            .await
        {
            Ok(_) => {
                load.acked.lock().unwrap().insert(seed);
            }
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                load.exhausted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => {
                load.other_failures.lock().unwrap().push(format!("{s:?}"));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fills_the_queue_to_its_watermark_then_it_drains_without_loss() {
    let sink_grpc = free_port();
    let sink = Agent::start(&outpost_integration::file_sink_config(sink_grpc));
    let link = TcpProxy::start_down(sink_grpc);
    let (grpc, http) = (free_port(), free_port());
    let front = Agent::start(&front_config(grpc, http, link.port()));
    let m = |q: &str| front.metric(q);
    let queue_bytes = r#"outpost_queue_bytes{stream="traces"}"#;
    let queue_records = r#"outpost_queue_records{stream="traces"}"#;
    let lag_records = r#"outpost_exporter_queue_lag_records{exporter="otlp"}"#;
    let retries = r#"outpost_exporter_send_retries_total{exporter="otlp"}"#;
    let last_success = r#"outpost_exporter_last_success_timestamp_seconds{exporter="otlp"}"#;

    let load = Arc::new(Load::default());

    // A few requests at a time first: the queue grows with each, while the exporter lags and retries.
    let mut client = TraceServiceClient::new(gen::grpc_channel(grpc).await);
    let mut sizes = Vec::new();
    for step in 1..=3u32 {
        for _ in 0..3 {
            let seed = load.next_seed.fetch_add(1, Ordering::SeqCst);
            client
                .export(gen::noisy_traces(SPANS as usize, "outage", seed, NOISE))
                .await
                .expect("accepted while the queue is small");
            load.acked.lock().unwrap().insert(seed);
        }
        let bytes = wait_for_async(
            Duration::from_secs(10),
            "the queue to hold every request so far, undelivered",
            || {
                let text = front.metrics_text();
                let v = |q: &str| outpost_integration::sum_metric(&text, q);
                (v(queue_records) == f64::from(3 * step)
                    && v(lag_records) == f64::from(3 * step)
                    && v(retries) > 0.0)
                    .then(|| v(queue_bytes))
            },
            || front.metrics_text(),
        )
        .await;
        sizes.push(bytes);
    }
    assert!(
        sizes.windows(2).all(|w| w[1] > w[0]),
        "the queue's bytes rise with every request held: {sizes:?}"
    );
    eprintln!("queue bytes after 3, 6, 9 requests: {sizes:?}");

    // Then load from several clients at once.
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        senders.spawn(sender(grpc, load.clone()));
    }
    let outage = Instant::now();

    // Past the high watermark: pressure, and clients pushed back.
    let mut peak = 0.0f64;
    wait_for_async(
        Duration::from_secs(30),
        "the queue to cross its high watermark and refuse a client with RESOURCE_EXHAUSTED",
        || {
            let text = front.metrics_text();
            peak = peak.max(outpost_integration::sum_metric(&text, queue_bytes));
            // queue_bytes is refreshed by the queue's maintenance (every 500 ms), the pressure flag at
            // once: wait for both.
            (outpost_integration::sum_metric(&text, "outpost_queue_pressure") == 1.0
                && peak >= HIGH_WATERMARK as f64
                && load.exhausted.load(Ordering::SeqCst) > 0)
                .then_some(())
        },
        || {
            format!(
                "{} acknowledged, {} exhausted, other failures {:?}\n{}",
                load.acked.lock().unwrap().len(),
                load.exhausted.load(Ordering::SeqCst),
                load.other_failures.lock().unwrap(),
                front.metrics_text()
            )
        },
    )
    .await;
    // Sustained pressure: clients keep being pushed back, and the queue stays bounded.
    let exhausted_at_pressure = load.exhausted.load(Ordering::SeqCst);
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(2) {
        peak = peak.max(m(queue_bytes));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        load.exhausted.load(Ordering::SeqCst) > exhausted_at_pressure,
        "clients are still refused while the destination stays down"
    );
    let text = front.metrics_text();
    peak = peak.max(outpost_integration::sum_metric(&text, queue_bytes));
    assert!(
        outpost_integration::sum_metric(
            &text,
            r#"outpost_receiver_refused_items_total{transport="grpc",reason="queue_full"}"#
        ) > 0.0,
        "refusals counted with reason queue_full\n{text}"
    );
    assert_eq!(
        outpost_integration::sum_metric(&text, last_success),
        0.0,
        "nothing was delivered while the destination was down\n{text}"
    );

    // HTTP clients are pushed back too: 429 with a Retry-After.
    let client = outpost_integration::http_client_builder()
        .no_proxy()
        .build()
        .unwrap();
    let resp = client
        .post(format!("http://127.0.0.1:{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(gen::noisy_traces(SPANS as usize, "outage-http", u32::MAX, NOISE).encode_to_vec())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(resp.status().as_u16(), 429, "HTTP under queue pressure");
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

    load.stop.store(true, Ordering::SeqCst);
    while let Some(done) = senders.join_next().await {
        done.expect("a sender panicked");
    }
    let text = front.metrics_text();
    peak = peak.max(outpost_integration::sum_metric(&text, queue_bytes));
    let acked = load.acked.lock().unwrap().clone();
    let queued_records = outpost_integration::sum_metric(&text, queue_records);
    let retried = outpost_integration::sum_metric(&text, retries);
    assert!(
        peak <= MAX_SIZE as f64,
        "the queue stays within max_size: peak {peak} > {MAX_SIZE}"
    );
    assert!(
        load.other_failures.lock().unwrap().is_empty(),
        "only RESOURCE_EXHAUSTED is expected under pressure: {:?}",
        load.other_failures.lock().unwrap()
    );
    let mut arrivals = Arrivals::new(&sink.dir().join("traces.jsonl"));
    arrivals.poll();
    assert_eq!(
        arrivals.total(),
        0,
        "nothing was delivered while the destination was down"
    );
    let outage_time = outage.elapsed();

    // The link is back: everything drains.
    link.restore();
    let restored = Instant::now();
    wait_for_async(
        Duration::from_secs(60),
        "the queue to drain completely and the pressure to end",
        || {
            let text = front.metrics_text();
            let v = |q: &str| outpost_integration::sum_metric(&text, q);
            (v(queue_records) == 0.0
                && v(queue_bytes) == 0.0
                && v(lag_records) == 0.0
                && v("outpost_queue_pressure") == 0.0)
                .then_some(())
        },
        || front.metrics_text(),
    )
    .await;
    let drain_time = restored.elapsed();
    assert!(m(last_success) > 0.0, "a success time once delivered");

    // Accepting again.
    let mut client = TraceServiceClient::new(gen::grpc_channel(grpc).await);
    let after = load.next_seed.fetch_add(1, Ordering::SeqCst);
    client
        .export(gen::noisy_traces(SPANS as usize, "outage", after, NOISE))
        .await
        .expect("accepted again once the queue drained");
    let mut acked = acked;
    acked.insert(after);

    let all_there = |a: &Arrivals| {
        acked
            .iter()
            .all(|s| (0..SPANS).all(|i| a.count((*s, i)) > 0))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        arrivals.poll();
        if all_there(&arrivals) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = arrivals.report(&acked, SPANS);
    eprintln!(
        "outage of {:.1}s: {} requests acknowledged, {} refused with RESOURCE_EXHAUSTED, {retried} send \
         retries, peak queue {:.2} MiB ({queued_records} records at the end of the outage); drained in \
         {:.1}s after the link came back\n  {report}",
        outage_time.as_secs_f64(),
        acked.len() - 1,
        load.exhausted.load(Ordering::SeqCst),
        peak / f64::from(1 << 20),
        drain_time.as_secs_f64()
    );
    assert!(
        report.lost.is_empty(),
        "{} acknowledged spans never arrived, e.g. {:?}\n  {report}",
        report.lost.len(),
        &report.lost[..report.lost.len().min(20)]
    );
    assert!(!front.log().contains("panicked"), "{}", front.log());
}

/// The link drops in a way that resets connections rather than refusing them (a NAT gateway or load
/// balancer in front of a dead uplink accepts, then resets): every export attempt fails at the transport
/// level. That is as retryable as a refused connection, so every acknowledged span must arrive once the
/// link is back, and nothing may be counted as permanently failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_resets_connections_loses_nothing() {
    const REQUESTS: u32 = 10;
    let sink_grpc = free_port();
    let sink = Agent::start(&outpost_integration::file_sink_config(sink_grpc));
    let link = TcpProxy::start_cut(sink_grpc);
    let (grpc, http) = (free_port(), free_port());
    let front = Agent::start(&front_config(grpc, http, link.port()));
    let mut client = TraceServiceClient::new(gen::grpc_channel(grpc).await);
    let mut acked = BTreeSet::new();
    for seed in 0..REQUESTS {
        client
            .export(gen::traces(SPANS as usize, "reset", seed))
            .await
            .expect("accepted into the queue");
        acked.insert(seed);
    }
    // Several export attempts meet a reset (retries back off 1 s, 2 s, ...).
    wait_for_async(
        Duration::from_secs(20),
        "three export attempts to meet a reset connection",
        || (link.refused() >= 3).then_some(()),
        || front.metrics_text(),
    )
    .await;
    link.restore();
    // Drained either way: delivered, or dropped as failed.
    wait_for_async(
        Duration::from_secs(40),
        "the front's queue to drain once the link is back",
        || {
            (front.metric(r#"outpost_exporter_queue_lag_records{exporter="otlp"}"#) == 0.0)
                .then_some(())
        },
        || front.metrics_text(),
    )
    .await;
    let mut arrivals = Arrivals::new(&sink.dir().join("traces.jsonl"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        arrivals.poll();
        let report = arrivals.report(&acked, SPANS);
        if report.lost.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged spans lost after the link reset connections: {report}\n{}",
            front.metrics_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = front.metric(r#"outpost_exporter_send_failed_items_total{exporter="otlp"}"#);
    assert_eq!(
        failed,
        0.0,
        "a reset is not a permanent failure\n{}",
        front.metrics_text()
    );
}
