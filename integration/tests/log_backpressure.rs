//! The log receivers under queue pressure: outpost's only exporter is behind a link that is down, so
//! its small queue fills past the high watermark.
//!
//! - `filelog` stops reading and keeps its place: the count of lines it handed over stops growing while
//!   the file still has thousands of unread lines, and once the link is back every line arrives, once.
//! - `syslog` over UDP cannot push back: what the pipeline refuses is dropped and counted with the
//!   refusal's reason.
//! - `syslog` over TCP pushes back instead: a message sent during the pressure waits (the connection is
//!   not read) and arrives once the queue drains.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use outpost_integration::otlp_json::{self, Signal};
use outpost_integration::proxy::TcpProxy;
use outpost_integration::{free_port, wait_for, Agent, Rng};

const LINES: usize = 40_000;
const UDP_MESSAGES: usize = 50;

fn sink_config(grpc: u16, out: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  file:
    path: "{out}"
extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
"#
    )
}

fn front_config(logs: &str, syslog_port: u16, destination: u16) -> String {
    format!(
        r#"
receivers:
  filelog:
    include: ["{logs}/*.log"]
    start_at: beginning
    poll_interval: 50ms
  syslog:
    protocol: rfc5424
    udp: {{listen_address: "127.0.0.1:{syslog_port}"}}
    tcp: {{listen_address: "127.0.0.1:{syslog_port}"}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{destination}
    # The link is down by not listening, so a short timeout buys nothing here; on a loaded machine a
    # 2 s timeout expired on batches the sink was still writing, and their retries arrived twice.
    timeout: 30s
extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
  max_size: 4MiB
  high_watermark: 1MiB
  low_watermark: 512KiB
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [filelog, syslog]
      exporters: [otlp]
"#
    )
}

fn bodies(path: &std::path::Path) -> BTreeMap<String, u32> {
    let mut seen = BTreeMap::new();
    for item in otlp_json::items(Signal::Logs, &otlp_json::read_requests(path)) {
        let body = item.value["body"]["stringValue"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *seen.entry(body).or_insert(0) += 1;
    }
    seen
}

#[test]
fn queue_pressure_pauses_files_counts_udp_drops_and_holds_tcp() {
    let tmp = tempfile::Builder::new()
        .prefix("outpost-it-logpressure-")
        .tempdir()
        .unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Incompressible lines, so the queue's compressed bytes pass the watermark well before the end.
    let mut rng = Rng::new(Rng::seed_from_env("LOG_PRESSURE_SEED"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(logs.join("app.log")).unwrap());
    for i in 0..LINES {
        let noise: String = (0..6).map(|_| format!("{:016x}", rng.next_u64())).collect();
        writeln!(file, "line {i:06} {noise}").unwrap();
    }
    file.into_inner().unwrap().sync_all().unwrap();

    let out = tmp.path().join("sink.jsonl");
    let sink_grpc = free_port();
    let _sink = Agent::start(&sink_config(sink_grpc, &out.display().to_string()));
    let link = TcpProxy::start_down(sink_grpc);
    let syslog_port = free_port();
    let front = Agent::start(&front_config(
        &logs.display().to_string(),
        syslog_port,
        link.port(),
    ));

    let accepted =
        |f: &Agent| f.metric(r#"outpost_receiver_accepted_items_total{receiver="filelog"}"#);
    wait_for(
        Duration::from_secs(30),
        "the queue to come under pressure",
        || (front.metric("outpost_queue_pressure") == 1.0).then_some(()),
        || front.metrics_text(),
    );
    // Reading pauses: once the chunks already in flight are settled, the count stays put. Still for
    // 2 s, since a chunk whose write a loaded machine delays is counted late.
    let paused = wait_for(
        Duration::from_secs(30),
        "the filelog receiver to stop handing over lines",
        || {
            let a = accepted(&front);
            std::thread::sleep(Duration::from_secs(2));
            (accepted(&front) == a).then_some(a)
        },
        || front.metrics_text(),
    );
    assert!(
        (paused as usize) < LINES,
        "reading should pause well before the end of the file ({paused} of {LINES})"
    );
    assert_eq!(front.metric("outpost_queue_pressure"), 1.0);

    // UDP under pressure: dropped, and counted with the reason.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..UDP_MESSAGES {
        let msg = format!("<14>1 - host app - - - udp under pressure {i}");
        udp.send_to(msg.as_bytes(), ("127.0.0.1", syslog_port))
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let dropped_query = r#"outpost_receiver_dropped_items_total{receiver="syslog",transport="udp",reason="queue_full"}"#;
    wait_for(
        Duration::from_secs(10),
        "the UDP messages to be counted as dropped",
        || (front.metric(dropped_query) == UDP_MESSAGES as f64).then_some(()),
        || front.metrics_text(),
    );

    // TCP under pressure: held, not dropped.
    let status = Command::new("logger")
        .args(["--server", "127.0.0.1", "--port", &syslog_port.to_string()])
        .args(["--tcp", "--rfc5424", "-t", "app", "tcp under pressure"])
        .status()
        .expect("util-linux logger");
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        front.metric(r#"outpost_receiver_accepted_items_total{receiver="syslog",transport="tcp"}"#),
        0.0,
        "the TCP message waits while the queue is under pressure"
    );
    assert_eq!(
        accepted(&front),
        paused,
        "the file stays where it was while the pressure lasts"
    );

    // The link comes back: everything read so far and everything left arrives, once.
    link.restore();
    let expected: Vec<String> = std::fs::read_to_string(logs.join("app.log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    wait_for(
        Duration::from_secs(120),
        "every line and the TCP message at the sink",
        || {
            let seen = bodies(&out);
            let tcp = seen.keys().any(|b| b.ends_with("tcp under pressure"));
            (tcp && expected.iter().all(|l| seen.contains_key(l))).then_some(())
        },
        || {
            let seen = bodies(&out);
            format!(
                "{} of {} lines; accepted {}\n{}",
                expected.iter().filter(|l| seen.contains_key(*l)).count(),
                expected.len(),
                accepted(&front),
                front.metrics_text()
            )
        },
    );
    let seen = bodies(&out);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "lines arrived twice: {twice:?}");
    assert!(
        !seen.keys().any(|b| b.contains("udp under pressure")),
        "UDP messages refused under pressure are dropped, not delivered late"
    );
    assert_eq!(
        front.metric("outpost_queue_dropped_items_total"),
        0.0,
        "the queue itself shed nothing"
    );
}
