//! The `file` exporter as a user configures it: one exporter listed in the traces, metrics and logs
//! pipelines at once, written to concurrently. The output must stay one complete OTLP JSON request per
//! line, whatever the interleaving of the signals.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use outpost_integration::otlp_json::{self, Signal};
use outpost_integration::{free_port, gen, wait_for_async, Agent};

/// Concurrent senders per signal, requests per sender, and items per request: each request makes a JSON
/// line of well over 8 KiB, past any small write buffer.
const SENDERS: usize = 4;
const REQUESTS: usize = 25;
const ITEMS: usize = 60;

/// One `file` exporter used by all three signals shares one writer: lines longer than any buffer, sent
/// concurrently on every signal, never interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_exporter_for_all_signals_writes_whole_lines() {
    let grpc = free_port();
    let agent = Agent::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  file:
    path: "@DIR@/all.jsonl"
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
    metrics:
      receivers: [otlp]
      exporters: [file]
    logs:
      receivers: [otlp]
      exporters: [file]
"#
    ));
    // Several senders per signal keep every exporter busy, so the three write to the file at once.
    let channel = gen::grpc_channel(grpc).await;
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let (c1, c2, c3) = (channel.clone(), channel.clone(), channel.clone());
        senders.spawn(async move {
            let mut client = TraceServiceClient::new(c1);
            for i in 0..REQUESTS {
                let seed = (sender * REQUESTS + i) as u32;
                client
                    .export(gen::traces(ITEMS, "file", seed))
                    .await
                    .expect("traces export");
            }
        });
        senders.spawn(async move {
            let mut client = MetricsServiceClient::new(c2);
            for _ in 0..REQUESTS {
                client
                    .export(gen::metrics(ITEMS, "file"))
                    .await
                    .expect("metrics export");
            }
        });
        senders.spawn(async move {
            let mut client = LogsServiceClient::new(c3);
            for _ in 0..REQUESTS {
                client
                    .export(gen::logs(ITEMS, "file"))
                    .await
                    .expect("logs export");
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.expect("the sender did not panic");
    }

    let path = agent.dir().join("all.jsonl");
    let expected = SENDERS * REQUESTS * ITEMS;
    let counts = || -> Vec<usize> {
        // read_requests panics on any complete line that is not JSON: two requests run together.
        let requests = otlp_json::read_requests(&path);
        Signal::ALL
            .iter()
            .map(|s| otlp_json::items(*s, &requests).len())
            .collect()
    };
    wait_for_async(
        Duration::from_secs(30),
        "every item in the shared file",
        || counts().iter().all(|c| *c >= expected).then_some(()),
        || format!("{:?} of {expected} each", counts()),
    )
    .await;
    assert_eq!(counts(), vec![expected; 3]);
    let lines = std::fs::read_to_string(&path).unwrap();
    for (i, line) in lines.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys.len(),
            1,
            "line {} holds one request of one signal: {keys:?}",
            i + 1
        );
    }
}
