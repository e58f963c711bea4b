//! kill -9: the promise that a client told "accepted" never loses its data, tested the hard way.
//!
//! A "front" outpost (OTLP/gRPC → batch (20 ms) → disk queue → `otlp` exporter) forwards to a "sink"
//! outpost that writes what it receives to a file. A Rust client sends numbered spans (every request has
//! its own `seed`, every span its `span.index`) in small requests, several in flight, and records which
//! requests were answered OK. While it sends, the front is SIGKILLed 3–5 times at moments drawn from a
//! seeded RNG (the seed is printed; `OUTPOST_CRASH_SEED` replays it) and restarted each time on the same
//! data directory and ports; the client retries whatever failed against the restarted front. At the end
//! every acknowledged span must be at the sink. Duplicates are allowed (at-least-once) and reported.
//!
//! Run with `--nocapture` to see the figures.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use outpost_integration::delivery::Arrivals;
use outpost_integration::{free_port, gen, wait_for_async, Agent, Rng};

/// Spans per request, and requests in flight.
const SPANS: u32 = 5;
const SENDERS: u32 = 4;

fn front_config(grpc: u16, sink_grpc: u16, sync: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  batch:
    send_batch_size: 200
    timeout: 20ms
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink_grpc}
    timeout: 5s
extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
  sync: {sync}
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

/// What the client saw.
#[derive(Default)]
struct Ledger {
    /// Seeds of the requests answered OK.
    acked: Mutex<BTreeSet<u32>>,
    /// Failed attempts by gRPC code (all retried).
    failures: Mutex<BTreeMap<String, u64>>,
    attempts: AtomicU64,
    next_seed: AtomicU32,
    /// Stop starting new requests.
    stop: AtomicBool,
}

impl Ledger {
    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn failure_count(&self) -> u64 {
        self.failures.lock().unwrap().values().sum()
    }
}

/// Sends requests of fresh seeds until told to stop; retries each until it is answered OK (or, once
/// stopping, until `give_up`), recording only OK answers as acknowledged.
async fn sender(port: u16, ledger: Arc<Ledger>, give_up: Duration) {
    let mut channel = gen::grpc_channel_lazy(port, Duration::from_secs(5));
    while !ledger.stop.load(Ordering::SeqCst) {
        let seed = ledger.next_seed.fetch_add(1, Ordering::SeqCst);
        let request = gen::traces(SPANS as usize, "crash", seed);
        let mut stopping_since: Option<Instant> = None;
        loop {
            ledger.attempts.fetch_add(1, Ordering::Relaxed);
            match TraceServiceClient::new(channel.clone())
                .export(request.clone())
                .await
            {
                Ok(response) => {
                    assert!(
                        response
                            .get_ref()
                            .partial_success
                            .as_ref()
                            .is_none_or(|p| p.rejected_spans == 0),
                        "valid spans were rejected: {response:?}"
                    );
                    ledger.acked.lock().unwrap().insert(seed);
                    break;
                }
                Err(status) => {
                    *ledger
                        .failures
                        .lock()
                        .unwrap()
                        .entry(format!("{:?}", status.code()))
                        .or_default() += 1;
                    if ledger.stop.load(Ordering::SeqCst) {
                        let since = *stopping_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > give_up {
                            break; // never acknowledged: not counted
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    // A fresh channel: never wait on the backoff of one that saw the old process die.
                    channel = gen::grpc_channel_lazy(port, Duration::from_secs(5));
                }
            }
        }
    }
}

async fn kill9_while_sending(sync: &str, seed_var: &str) {
    let seed = Rng::seed_from_env(seed_var);
    let mut rng = Rng::new(seed);
    let kills = rng.range(3, 5);
    let delays: Vec<u64> = (0..kills).map(|_| rng.range(300, 2500)).collect();
    eprintln!("sync={sync}: {kills} kills, after {delays:?} ms of sending each");

    let sink_grpc = free_port();
    let sink = Agent::start(&outpost_integration::file_sink_config(sink_grpc));
    let front_grpc = free_port();
    let config = front_config(front_grpc, sink_grpc, sync);
    let data = tempfile::Builder::new()
        .prefix("outpost-it-crash-")
        .tempdir()
        .expect("a data dir that outlives each front");
    let mut front = Agent::spawn(&config, Some(data.path()), &[]);
    front.wait_ready();

    let ledger = Arc::new(Ledger::default());
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        senders.spawn(sender(front_grpc, ledger.clone(), Duration::from_secs(15)));
    }

    let started = Instant::now();
    let mut dead = Vec::new();
    for (k, delay) in delays.iter().enumerate() {
        // Let the restarted front take load: at least `delay`, and at least 10 more acknowledgements.
        let before = ledger.acked_count();
        tokio::time::sleep(Duration::from_millis(*delay)).await;
        wait_for_async(
            Duration::from_secs(20),
            "the front to acknowledge requests before the next kill",
            || (ledger.acked_count() >= before + 10).then_some(()),
            || {
                format!(
                    "{} acknowledged, failures {:?}",
                    ledger.acked_count(),
                    ledger.failures.lock().unwrap()
                )
            },
        )
        .await;
        let acked_at_kill = ledger.acked_count();
        let status = front.kill9();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "kill {} of the front: it died of SIGKILL, not on its own: {status}\n{}",
            k + 1,
            front.log()
        );
        eprintln!(
            "kill {} at {:.1}s: {acked_at_kill} requests acknowledged so far",
            k + 1,
            started.elapsed().as_secs_f64()
        );
        dead.push(front);
        front = Agent::spawn(&config, Some(data.path()), &[]);
        front.wait_ready();
    }
    // The last incarnation takes load too, then the client stops and finishes what is in flight.
    let before = ledger.acked_count();
    wait_for_async(
        Duration::from_secs(20),
        "the last front to acknowledge requests",
        // At least 50 more, and the 100 the checks below need to say anything, however slowly the
        // earlier incarnations were fed.
        || (ledger.acked_count() >= (before + 50).max(100)).then_some(()),
        || format!("{} acknowledged", ledger.acked_count()),
    )
    .await;
    ledger.stop.store(true, Ordering::SeqCst);
    while let Some(done) = senders.join_next().await {
        done.expect("a sender panicked");
    }
    let send_time = started.elapsed();
    let acked = ledger.acked.lock().unwrap().clone();
    let failures = ledger.failures.lock().unwrap().clone();
    assert!(
        acked.len() >= 100,
        "too few requests acknowledged to say anything ({})",
        acked.len()
    );
    assert!(
        ledger.failure_count() > 0,
        "the kills never interrupted a request: the test did not test anything"
    );

    // Everything acknowledged reaches the sink, whatever the kills interrupted.
    let mut arrivals = Arrivals::new(&sink.dir().join("traces.jsonl"));
    let all_there = |a: &Arrivals| {
        acked
            .iter()
            .all(|s| (0..SPANS).all(|i| a.count((*s, i)) > 0))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        arrivals.poll();
        if all_there(&arrivals) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the front finish delivering anything still queued, so the duplicate count is complete.
    wait_for_async(
        Duration::from_secs(20),
        "the front's queue to drain",
        || {
            (front.metric(r#"outpost_exporter_queue_lag_records{exporter="otlp"}"#) == 0.0)
                .then_some(())
        },
        || front.metrics_text(),
    )
    .await;
    arrivals.poll();
    let report = arrivals.report(&acked, SPANS);
    eprintln!(
        "sync={sync} seed={seed}: {kills} kills in {:.1}s of sending; {} requests acknowledged, \
         {} attempts, failed attempts by code {failures:?}\n  {report}",
        send_time.as_secs_f64(),
        acked.len(),
        ledger.attempts.load(Ordering::Relaxed),
    );
    for (i, agent) in dead.iter().chain([&front, &sink]).enumerate() {
        assert!(
            !agent.log().contains("panicked"),
            "agent {i} panicked:\n{}",
            agent.log()
        );
    }
    assert!(
        report.lost.is_empty(),
        "sync={sync} (seed {seed}, replay with {seed_var}={seed}): {} acknowledged spans were lost after \
         kill -9, e.g. {:?}\n  {report}",
        report.lost.len(),
        &report.lost[..report.lost.len().min(20)]
    );
    assert_eq!(arrivals.unkeyed(), 0, "spans the client never sent");
}

/// `queue.sync: always`: every acknowledged append was fsynced; kill -9 loses nothing acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_no_acknowledged_span_with_sync_always() {
    kill9_while_sending("always", "OUTPOST_CRASH_SEED").await;
}

/// `queue.sync: 100ms`: an acknowledged append has reached the WAL in the kernel but may not be fsynced
/// yet. A *process* kill must still lose nothing (the kernel keeps the page cache; only a power loss
/// could lose up to the interval), so the assertion is the same: zero acknowledged spans lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_no_acknowledged_span_with_sync_interval() {
    kill9_while_sending("100ms", "OUTPOST_CRASH_SEED_INTERVAL").await;
}
