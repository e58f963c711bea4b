//! The device under the disk queue fills up: outpost keeps running, pushes back on clients with retryable
//! codes and counts what it refuses, never panics, and works again once space is freed.
//!
//! The front's data directory is on a small tmpfs (we mount it; `OUTPOST_SKIP_MOUNT_TESTS=1` skips where
//! mounting is impossible), its destination is down, and `queue.max_size` is far larger than the
//! device, so the device fills before any watermark is reached. A filler file takes part of the device
//! up front; deleting it (and restoring the destination, so the queue can drain) frees space.
//!
//! Run with `--nocapture` to see the figures.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use outpost_integration::delivery::Arrivals;
use outpost_integration::proxy::TcpProxy;
use outpost_integration::tmpfs::{self, tmpfs_or_skip};
use outpost_integration::{free_port, gen, http_get, sum_metric, wait_for_async, Agent};
use prost::Message;

const SPANS: u32 = 50;
/// ~50 KB per request, ~40 KB stored.
const NOISE: usize = 1000;
const SENDERS: u32 = 3;

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
  max_size: 1GiB
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
    /// Refusals by gRPC code.
    refused: Mutex<Vec<tonic::Code>>,
    consecutive_refusals: AtomicU64,
    next_seed: AtomicU32,
    stop: AtomicBool,
}

async fn sender(port: u16, load: Arc<Load>) {
    let mut client = TraceServiceClient::new(gen::grpc_channel_lazy(port, Duration::from_secs(10)));
    while !load.stop.load(Ordering::SeqCst) {
        let seed = load.next_seed.fetch_add(1, Ordering::SeqCst);
        match client
            .export(gen::noisy_traces(SPANS as usize, "disk-full", seed, NOISE))
            .await
        {
            Ok(_) => {
                load.acked.lock().unwrap().insert(seed);
                load.consecutive_refusals.store(0, Ordering::SeqCst);
            }
            Err(s) => {
                load.refused.lock().unwrap().push(s.code());
                load.consecutive_refusals.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The device fills while RocksDB appends to its write-ahead log: 28 MiB with an 18 MiB filler leaves
/// ~10 MiB, less than one memtable (16 MiB), so the WAL append is what hits ENOSPC. Deleting the filler
/// frees more than a memtable's worth, which outpost waits for before it reopens RocksDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pushes_back_without_panicking_and_recovers_once_space_is_freed() {
    disk_full("28m", 18 << 20).await;
}

/// The device fills while RocksDB flushes a full memtable to a table file: 48 MiB with a 24 MiB filler
/// holds one 16 MiB memtable in the WAL, but not its table file as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_during_a_flush_recovers_once_space_is_freed() {
    disk_full("48m", 24 << 20).await;
}

/// Small flash: a 16 MiB device, 4 MiB of it a filler. Once the filler is deleted and the destination
/// is back, outpost must accept data again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_small_device_recovers_once_space_is_freed() {
    disk_full("16m", 4 << 20).await;
}

async fn disk_full(device: &str, filler_len: u64) {
    // Declared first, so it is unmounted last: after every agent using it has stopped.
    let Some(device_fs) = tmpfs_or_skip(device, "the disk-full test") else {
        return;
    };
    let filler = tmpfs::filler_path(device_fs.path());
    assert_eq!(
        tmpfs::fill_file(&filler, Some(filler_len)),
        filler_len,
        "writing the filler"
    );

    let sink_grpc = free_port();
    let sink = Agent::start(&outpost_integration::file_sink_config(sink_grpc));
    let link = TcpProxy::start_down(sink_grpc);
    let (grpc, http) = (free_port(), free_port());
    let mut front = Agent::spawn(
        &front_config(grpc, http, link.port()),
        Some(&device_fs.path().join("data")),
        &["--shutdown-timeout", "5s"],
    );
    front.wait_ready();

    // Send until the device is full: the front keeps refusing.
    let load = Arc::new(Load::default());
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        senders.spawn(sender(grpc, load.clone()));
    }
    let started = Instant::now();
    wait_for_async(
        Duration::from_secs(60),
        "the device to fill up and the front to refuse every request",
        || (load.consecutive_refusals.load(Ordering::SeqCst) >= 10).then_some(()),
        || {
            format!(
                "{} acknowledged, {} refused, device {:?} (total, available)\n{}",
                load.acked.lock().unwrap().len(),
                load.refused.lock().unwrap().len(),
                device_fs.space(),
                front.metrics_text()
            )
        },
    )
    .await;
    let fill_time = started.elapsed();
    let (_, available) = device_fs.space();
    assert!(
        front.is_running(),
        "outpost died on a full disk:\n{}",
        front.log()
    );

    // While full: alive, refusing with retryable codes, counting the refusals, never past a watermark.
    assert_eq!(
        http_get(front.admin_addr(), "/healthz")
            .expect("the admin endpoint answers on a full disk")
            .status,
        200
    );
    let client = outpost_integration::http_client_builder()
        .no_proxy()
        .build()
        .unwrap();
    let resp = client
        .post(format!("http://127.0.0.1:{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(gen::noisy_traces(SPANS as usize, "disk-full-http", u32::MAX, NOISE).encode_to_vec())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("an HTTP answer on a full disk");
    let http_status = resp.status().as_u16();
    assert!(
        matches!(http_status, 429 | 503),
        "HTTP on a full disk: a retryable status, got {http_status}"
    );
    // The refusals first, then the counters: a refusal is counted before it is answered, so every one
    // the clients saw is in a later snapshot, while the senders go on.
    let codes = load.refused.lock().unwrap().clone();
    let text = front.metrics_text();
    let refused_items = sum_metric(
        &text,
        r#"outpost_receiver_refused_items_total{signal="traces"}"#,
    );
    let acked_while_filling = load.acked.lock().unwrap().len();
    let queue_bytes = sum_metric(&text, r#"outpost_queue_bytes{stream="traces"}"#);
    eprintln!(
        "device {device} (filler {} MiB) full after {:.1}s: {acked_while_filling} requests acknowledged, \
         {} refused, {refused_items} items counted refused, queue {:.1} MiB, {} KiB left on the device",
        filler_len >> 20,
        fill_time.as_secs_f64(),
        codes.len(),
        queue_bytes / f64::from(1 << 20),
        available >> 10
    );
    assert!(
        codes
            .iter()
            .all(|c| matches!(c, tonic::Code::ResourceExhausted | tonic::Code::Unavailable)),
        "only retryable codes on a full disk: {codes:?}"
    );
    assert!(
        refused_items >= (codes.len() as f64) * f64::from(SPANS),
        "every refused request counted per item: {refused_items} for {} refusals\n{text}",
        codes.len()
    );
    assert_eq!(
        sum_metric(&text, "outpost_queue_pressure"),
        0.0,
        "the device filled up, not the queue (max_size 1GiB)\n{text}"
    );
    assert!(
        sum_metric(
            &text,
            r#"outpost_receiver_refused_items_total{signal="traces",reason="no_space"}"#
        ) > 0.0,
        "refusals for a full device are counted as no_space\n{text}"
    );
    assert!(
        acked_while_filling > 0,
        "nothing was accepted before the disk filled"
    );

    // Free space: the filler goes, and the destination comes back so the queue can drain.
    std::fs::remove_file(&filler).expect("deleting the filler");
    link.restore();
    let freed = Instant::now();
    let before = load.acked.lock().unwrap().len();
    wait_for_async(
        Duration::from_secs(45),
        "appends to succeed again once space was freed",
        || (load.acked.lock().unwrap().len() >= before + 5).then_some(()),
        || {
            format!(
                "{} acknowledged, device {:?} (total, available)\n{}",
                load.acked.lock().unwrap().len(),
                device_fs.space(),
                front.metrics_text()
            )
        },
    )
    .await;
    let recovery_time = freed.elapsed();
    load.stop.store(true, Ordering::SeqCst);
    while let Some(done) = senders.join_next().await {
        done.expect("a sender panicked");
    }
    let acked = load.acked.lock().unwrap().clone();

    // Everything acknowledged, before and after the disk filled, reaches the destination.
    let mut arrivals = Arrivals::new(&sink.dir().join("traces.jsonl"));
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        arrivals.poll();
        let done = acked
            .iter()
            .all(|s| (0..SPANS).all(|i| arrivals.count((*s, i)) > 0));
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = arrivals.report(&acked, SPANS);
    eprintln!(
        "device {device}: accepting again {:.1}s after space was freed; {} requests acknowledged in all\n  {report}",
        recovery_time.as_secs_f64(),
        acked.len()
    );
    assert!(
        report.lost.is_empty(),
        "{} acknowledged spans never arrived, e.g. {:?}\n  {report}",
        report.lost.len(),
        &report.lost[..report.lost.len().min(20)]
    );
    let log = front.log();
    assert!(!log.contains("panicked"), "outpost panicked:\n{log}");
    front.sigterm();
    front.wait_exit(Duration::from_secs(20));
}
