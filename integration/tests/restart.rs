//! A clean restart with the uplink down: what is queued for a dead destination survives SIGTERM and a
//! new start on the same data directory, and is delivered once the destination is reachable, each span
//! exactly once (nothing was delivered before, so there is nothing to duplicate).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use outpost_integration::delivery::Arrivals;
use outpost_integration::proxy::TcpProxy;
use outpost_integration::{free_port, gen, wait_for, Agent};

const REQUESTS: u32 = 20;
const SPANS: u32 = 10;

fn front_config(grpc: u16, destination: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  otlp:
    endpoint: 127.0.0.1:{destination}
    # The link is down by not listening, which fails at once; a short timeout would only resend a
    # batch that a loaded sink is still writing, and the test counts duplicates.
    timeout: 30s
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
      exporters: [otlp]
"#
    )
}

fn queued(front: &Agent) -> (f64, f64) {
    let text = front.metrics_text();
    (
        outpost_integration::sum_metric(&text, r#"outpost_queue_records{stream="traces"}"#),
        outpost_integration::sum_metric(
            &text,
            r#"outpost_exporter_queue_lag_records{exporter="otlp"}"#,
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_queued_for_a_dead_destination_survive_a_clean_restart() {
    let sink_grpc = free_port();
    let sink = Agent::start(&outpost_integration::file_sink_config(sink_grpc));
    let link = TcpProxy::start_down(sink_grpc);
    let data = tempfile::Builder::new()
        .prefix("outpost-it-restart-")
        .tempdir()
        .unwrap();
    let grpc = free_port();
    let config = front_config(grpc, link.port());

    let mut front = Agent::spawn(&config, Some(data.path()), &[]);
    front.wait_ready();
    let mut client = TraceServiceClient::new(gen::grpc_channel(grpc).await);
    let mut acked = BTreeSet::new();
    for seed in 0..REQUESTS {
        client
            .export(gen::traces(SPANS as usize, "restart", seed))
            .await
            .expect("accepted into the queue");
        acked.insert(seed);
    }
    drop(client);
    let records = wait_for(
        Duration::from_secs(10),
        "everything queued (one record per request), none of it delivered",
        || {
            let (records, lag) = queued(&front);
            (records == f64::from(REQUESTS) && lag == records).then_some(records)
        },
        || front.metrics_text(),
    );
    wait_for(
        Duration::from_secs(10),
        "the exporter to fail against the dead destination and retry",
        || {
            (front.metric(r#"outpost_exporter_send_retries_total{exporter="otlp"}"#) > 0.0)
                .then_some(())
        },
        || front.metrics_text(),
    );

    front.sigterm();
    let status = front.wait_exit(Duration::from_secs(20));
    assert!(
        status.success(),
        "a clean stop while the destination is down: {status}\n{}",
        front.log()
    );
    let first_log = front.log();
    drop(front);

    // Same directory, destination still down: the queue is recovered as it was.
    let mut front = Agent::spawn(&config, Some(data.path()), &[]);
    front.wait_ready();
    let (after_restart, lag_after_restart) = queued(&front);
    assert_eq!(
        (after_restart, lag_after_restart),
        (records, records),
        "the restarted agent recovers every queued record and the cursor's lag"
    );

    // The destination comes back: everything arrives, once.
    link.restore();
    let restored = Instant::now();
    let mut arrivals = Arrivals::new(&sink.dir().join("traces.jsonl"));
    let deadline = Instant::now() + Duration::from_secs(40);
    while arrivals.total() < u64::from(REQUESTS * SPANS) {
        assert!(
            Instant::now() < deadline,
            "only {} of {} spans arrived 40 s after the link came back\n{}",
            arrivals.total(),
            REQUESTS * SPANS,
            front.metrics_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        arrivals.poll();
    }
    wait_for(
        Duration::from_secs(10),
        "the queue to drain",
        || (queued(&front) == (0.0, 0.0)).then_some(()),
        || front.metrics_text(),
    );
    arrivals.poll();
    let report = arrivals.report(&acked, SPANS);
    eprintln!(
        "{records} records survived the restart; delivered {:.1}s after the link came back\n  {report}",
        restored.elapsed().as_secs_f64()
    );
    assert!(
        report.lost.is_empty(),
        "lost after a clean restart: {report}"
    );
    assert_eq!(
        (report.duplicates, report.unacked_arrived),
        (0, 0),
        "nothing was delivered before the restart, so nothing may arrive twice: {report}"
    );
    front.sigterm();
    assert!(front.wait_exit(Duration::from_secs(20)).success());
    assert!(!first_log.contains("panicked") && !front.log().contains("panicked"));
}
