//! `outpost queue inspect --dir` and `outpost queue verify --dir` as an operator uses them on a node whose
//! uplink is dead: records are queued for an exporter that cannot deliver, and the tools show them (the
//! stream, its record, item and byte counts, the exporter's cursor and its lag) and check every one.

use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use outpost_integration::proxy::TcpProxy;
use outpost_integration::{
    free_port, gen, outpost_command, run_with_timeout, wait_for, Agent, Finished,
};

const REQUESTS: u32 = 12;
const SPANS: usize = 7;

fn config(grpc: u16, destination: u16) -> String {
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
    timeout: 2s
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

fn queue_cli(command: &str, dir: &Path) -> Finished {
    run_with_timeout(
        outpost_command().args(["queue", command, "--dir"]).arg(dir),
        Duration::from_secs(30),
    )
}

/// The number right before `unit` in `line`: `number_before("3 records, 9 items", " items") == Some(9)`.
fn number_before(line: &str, unit: &str) -> Option<u64> {
    let end = line.find(unit)?;
    let start = line[..end]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    line[start..end].parse().ok()
}

/// A size as `queue inspect` prints it (`255 B`, `3.3 KiB`, `1.2 MiB`) → (bytes, the precision of the
/// figure in bytes).
fn parse_size(text: &str) -> Option<(f64, f64)> {
    let mut words = text.split_whitespace();
    let value: f64 = words.next()?.parse().ok()?;
    let unit = match words.next()? {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    // Bytes are printed exactly, larger units with one decimal.
    let precision = if unit == 1.0 { 0.0 } else { 0.05 * unit };
    Some((value * unit, precision))
}

/// Whether the printed size `text` stands for `bytes`.
fn size_matches(text: &str, bytes: u64) -> bool {
    parse_size(text).is_some_and(|(v, precision)| (v - bytes as f64).abs() <= precision + 0.5)
}

/// The `stream NAME ...` line and the `cursor EXPORTER: ...` line under it.
fn stream_and_cursor<'a>(report: &'a str, stream: &str, exporter: &str) -> (&'a str, &'a str) {
    let mut lines = report.lines().map(str::trim);
    let stream_line = lines
        .by_ref()
        .find(|l| l.starts_with(&format!("stream {stream} ")))
        .unwrap_or_else(|| panic!("no stream '{stream}' in:\n{report}"));
    let cursor_line = lines
        .take_while(|l| !l.starts_with("stream "))
        .find(|l| l.starts_with(&format!("cursor {exporter}:")))
        .unwrap_or_else(|| panic!("no cursor '{exporter}' under stream '{stream}' in:\n{report}"));
    (stream_line, cursor_line)
}

/// What inspect must show for `REQUESTS` undelivered records of `bytes` bytes.
fn check_inspect(report: &str, bytes: u64) {
    let (stream, cursor) = stream_and_cursor(report, "traces", "otlp");
    assert_eq!(
        number_before(stream, " records"),
        Some(u64::from(REQUESTS)),
        "{stream}"
    );
    assert_eq!(
        number_before(stream, " items"),
        Some(u64::from(REQUESTS) * SPANS as u64),
        "{stream}"
    );
    // `N records, M items, SIZE, oldest AGE, last seq S`
    let size = stream.split(", ").nth(2).unwrap_or_default();
    assert!(
        size_matches(size, bytes),
        "the stream's size ({size}) is the {bytes} bytes /metrics reports: {stream}"
    );
    assert_eq!(
        stream
            .split("last seq ")
            .nth(1)
            .and_then(|s| s.trim().parse::<u64>().ok()),
        Some(u64::from(REQUESTS)),
        "{stream}"
    );
    assert_eq!(
        cursor
            .split("watermark ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.trim().parse::<u64>().ok()),
        Some(0),
        "nothing delivered: {cursor}"
    );
    let lag = cursor
        .split("lag ")
        .nth(1)
        .unwrap_or_else(|| panic!("no lag in: {cursor}"));
    assert_eq!(
        number_before(lag, " records"),
        Some(u64::from(REQUESTS)),
        "{cursor}"
    );
    // `lag N records / SIZE, oldest undelivered AGE`
    let lag_size = lag
        .split(" / ")
        .nth(1)
        .and_then(|l| l.split(',').next())
        .unwrap_or_default();
    assert!(
        size_matches(lag_size, bytes),
        "the cursor's lag ({lag_size}) is every queued byte ({bytes}): {cursor}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_and_verify_show_records_queued_for_a_dead_destination() {
    let dead = TcpProxy::start_down(free_port());
    let grpc = free_port();
    let mut agent = Agent::start(&config(grpc, dead.port()));
    let mut client = TraceServiceClient::new(gen::grpc_channel(grpc).await);
    for seed in 0..REQUESTS {
        client
            .export(gen::traces(SPANS, "cli", seed))
            .await
            .expect("accepted into the queue");
    }
    let bytes = wait_for(
        Duration::from_secs(10),
        "every request queued and the exporter retrying",
        || {
            let text = agent.metrics_text();
            let v = |q: &str| outpost_integration::sum_metric(&text, q);
            (v(r#"outpost_queue_records{stream="traces"}"#) == f64::from(REQUESTS)
                && v(r#"outpost_exporter_queue_lag_records{exporter="otlp"}"#)
                    == f64::from(REQUESTS)
                && v(r#"outpost_exporter_send_retries_total{exporter="otlp"}"#) > 0.0)
                .then(|| v(r#"outpost_queue_bytes{stream="traces"}"#) as u64)
        },
        || agent.metrics_text(),
    );
    assert!(bytes > 0);

    // Alongside the running agent (a RocksDB secondary instance).
    let live = queue_cli("inspect", agent.data_dir());
    assert!(
        live.status.success(),
        "inspect while the agent runs: {}\n{}{}",
        live.status,
        live.stdout,
        live.stderr
    );
    check_inspect(&live.stdout, bytes);

    agent.sigterm();
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", agent.log());

    let inspected = queue_cli("inspect", agent.data_dir());
    assert!(
        inspected.status.success(),
        "inspect: {}\n{}{}",
        inspected.status,
        inspected.stdout,
        inspected.stderr
    );
    eprintln!("{}", inspected.stdout);
    check_inspect(&inspected.stdout, bytes);

    let verified = queue_cli("verify", agent.data_dir());
    eprintln!("{}", verified.stdout);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "verify: {}{}",
        verified.stdout,
        verified.stderr
    );
    assert!(
        verified
            .stdout
            .contains(&format!("{REQUESTS} records ok, 0 corrupt")),
        "every record checked and intact:\n{}",
        verified.stdout
    );

    // Read-only tools: the directory still opens, the same records still queued.
    let again = queue_cli("inspect", agent.data_dir());
    check_inspect(&again.stdout, bytes);
}

/// A directory that holds no queue: both tools exit 1 and say which directory and why, instead of
/// creating a queue there.
#[test]
fn inspect_and_verify_refuse_a_directory_without_a_queue() {
    let empty = tempfile::tempdir().unwrap();
    for command in ["inspect", "verify"] {
        let out = queue_cli(command, empty.path());
        assert_eq!(
            out.status.code(),
            Some(1),
            "{command}: {}\n{}{}",
            out.status,
            out.stdout,
            out.stderr
        );
        assert!(
            out.stderr.contains(&empty.path().display().to_string()),
            "{command} names the directory: {}",
            out.stderr
        );
        assert_eq!(
            std::fs::read_dir(empty.path()).unwrap().count(),
            0,
            "{command} wrote into the directory"
        );
    }
}

#[test]
fn sizes_parse_as_inspect_prints_them() {
    assert!(size_matches("255 B", 255));
    assert!(!size_matches("255 B", 256));
    assert!(size_matches("3.3 KiB", 3380));
    assert!(!size_matches("3.3 KiB", 3500));
    assert!(size_matches("2.0 MiB", 2 << 20));
    assert_eq!(number_before("12 records, 84 items", " items"), Some(84));
}
