//! The `prometheusremotewrite` exporter end to end.
//!
//! - Against a real Prometheus (Debian's 2.42, started by the test as a remote-write receiver): metrics
//!   made by the real OpenTelemetry Python SDK (integration/python/prom_metrics.py) go through outpost
//!   (OTLP receiver → disk queue → exporter) and are read back through Prometheus's HTTP API with their
//!   exact names, labels and values.
//! - Against hand-written fault sinks: a permanent 400 is dropped and counted, not retried; 429 and 503
//!   with Retry-After are retried no sooner than the server asked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use outpost_integration::gen::{self, METRICS_PATH};
use outpost_integration::prometheus::Prometheus;
use outpost_integration::{free_port, python::python, run_with_timeout, wait_for, Agent};
use prost::Message;
use serde_json::Value;

fn agent_config(grpc_port: u16, endpoint: &str, extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
exporters:
  prometheusremotewrite:
    endpoint: {endpoint}
    timeout: 10s
{extra}
extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheusremotewrite]
"#
    )
}

fn labels_of(m: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    v.sort();
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = p
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn sdk_metrics_arrive_in_prometheus_with_exact_names_labels_and_values() {
    let python = python();
    let prom = Prometheus::start();
    let grpc = free_port();
    let extra = "    send_metadata: true\n    external_labels:\n      cluster: edge-it\n";
    let agent = Agent::start(&agent_config(grpc, &prom.write_url(), extra));

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/prom_metrics.py");
    let mut cmd = Command::new(&python);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(key);
        }
    }
    let sent = run_with_timeout(
        cmd.arg(&script)
            .arg("--endpoint")
            .arg(format!("127.0.0.1:{grpc}"))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost"),
        Duration::from_secs(120),
    );
    assert!(
        sent.status.success(),
        "the SDK reported a failed export ({}):\n{}\n{}",
        sent.status,
        sent.stdout,
        sent.stderr
    );
    let summary: Value =
        serde_json::from_str(sent.stdout.trim()).expect("the script's JSON summary");
    // Everything outpost accepted (the script has finished, so this is final) is acknowledged by
    // Prometheus: the exporter counts a payload as sent only after every one of its requests got a 2xx.
    let accepted = agent.metric(r#"outpost_receiver_accepted_items_total{signal="metrics"}"#);
    assert!(accepted >= 6.0, "one collection holds 6 points: {accepted}");
    let sent_q =
        r#"outpost_exporter_sent_items_total{exporter="prometheusremotewrite",signal="metrics"}"#;
    wait_for(
        Duration::from_secs(60),
        "outpost to deliver every point to Prometheus",
        || (agent.metric(sent_q) >= accepted).then_some(()),
        || {
            format!(
                "{}\n--- outpost log ---\n{}",
                agent.metrics_text(),
                agent.log()
            )
        },
    );
    let text = agent.metrics_text();
    assert_eq!(
        outpost_integration::sum_metric(
            &text,
            r#"outpost_exporter_send_failed_items_total{exporter="prometheusremotewrite"}"#
        ),
        0.0,
        "{text}"
    );

    // Exactly these series exist for the service: names with units and _total, the histogram's parts,
    // the native histogram and target_info.
    let mut names: Vec<String> = prom
        .series(r#"{job="shop/checkout"}"#)
        .iter()
        .map(|s| s["__name__"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names,
        vec![
            "outpost_prom_latency_milliseconds_bucket",
            "outpost_prom_latency_milliseconds_count",
            "outpost_prom_latency_milliseconds_sum",
            "outpost_prom_payload_size_bytes",
            "outpost_prom_queue_depth",
            "outpost_prom_requests_total",
            "outpost_prom_temperature_celsius",
            "target_info",
        ],
        "{}",
        prom.log()
    );

    // Counter: the cumulative total per route, with exactly job, instance, the point's attribute and the
    // external label.
    let (labels, value) = prom.query_one(r#"outpost_prom_requests_total{route="/buy"}"#);
    assert_eq!(value, 7.0);
    assert_eq!(
        labels_of(&labels),
        pairs(&[
            ("__name__", "outpost_prom_requests_total"),
            ("cluster", "edge-it"),
            ("instance", "node-7"),
            ("job", "shop/checkout"),
            ("route", "/buy"),
        ])
    );
    assert_eq!(
        prom.query_one(r#"outpost_prom_requests_total{route="/sell"}"#)
            .1,
        2.0
    );

    // Up-down counter → gauge (no _total; the {items} annotation adds no unit). Gauge with its unit.
    let (labels, value) = prom.query_one("outpost_prom_queue_depth");
    assert_eq!(value, 3.0);
    assert_eq!(
        labels_of(&labels),
        pairs(&[
            ("__name__", "outpost_prom_queue_depth"),
            ("cluster", "edge-it"),
            ("instance", "node-7"),
            ("job", "shop/checkout"),
        ])
    );
    assert_eq!(prom.query_one("outpost_prom_temperature_celsius").1, 21.5);

    // Histogram: cumulative buckets ending at +Inf, sum and count.
    for (le, count) in [("10", 1.0), ("100", 3.0), ("1000", 4.0), ("+Inf", 5.0)] {
        let (labels, value) = prom.query_one(&format!(
            r#"outpost_prom_latency_milliseconds_bucket{{le="{le}"}}"#
        ));
        assert_eq!(value, count, "le={le}");
        assert_eq!(labels.len(), 5, "{labels:?}"); // __name__, cluster, instance, job, le
    }
    assert_eq!(
        prom.query_one("outpost_prom_latency_milliseconds_sum").1,
        5615.0
    );
    assert_eq!(
        prom.query_one("outpost_prom_latency_milliseconds_count").1,
        5.0
    );
    // PromQL over the classic buckets works as for a scraped histogram: the median falls in (10, 100].
    let p50 = prom
        .query_one("histogram_quantile(0.5, outpost_prom_latency_milliseconds_bucket)")
        .1;
    assert!(p50 > 10.0 && p50 <= 100.0, "p50 = {p50}");

    // Exponential histogram → native histogram.
    assert_eq!(
        prom.query_one("histogram_count(outpost_prom_payload_size_bytes)")
            .1,
        4.0
    );
    assert_eq!(
        prom.query_one("histogram_sum(outpost_prom_payload_size_bytes)")
            .1,
        1007.0
    );
    let frac = prom
        .query_one("histogram_fraction(0, 5, outpost_prom_payload_size_bytes)")
        .1;
    assert!(
        (frac - 0.75).abs() < 0.01,
        "3 of 4 observations are <= 5: {frac}"
    );

    // target_info: the other resource attributes, joined on job and instance.
    let (labels, value) = prom.query_one("target_info");
    assert_eq!(value, 1.0);
    let labels = labels_of(&labels);
    for want in [
        ("deployment_environment", "edge-test"),
        ("telemetry_sdk_language", "python"),
        ("job", "shop/checkout"),
        ("instance", "node-7"),
        ("cluster", "edge-it"),
    ] {
        assert!(
            labels.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} in {labels:?}"
        );
    }
    assert!(
        !labels.iter().any(|(k, _)| k.starts_with("service_")),
        "service.* attributes are job/instance, not target_info labels: {labels:?}"
    );

    // The exemplar of the value recorded inside a span, on the bucket it fell in.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exemplars = prom.api(
        "/api/v1/query_exemplars",
        &[
            ("query", "outpost_prom_latency_milliseconds_bucket"),
            ("start", &(now - 600).to_string()),
            ("end", &(now + 60).to_string()),
        ],
    );
    let found: Vec<&Value> = exemplars
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["exemplars"].as_array().into_iter().flatten())
        .collect();
    assert!(!found.is_empty(), "no exemplars: {exemplars}");
    let trace_id = summary["trace_id"].as_str().unwrap();
    let span_id = summary["span_id"].as_str().unwrap();
    assert!(
        found.iter().all(|e| e["labels"]["trace_id"] == trace_id
            && e["labels"]["span_id"] == span_id
            && e["value"] == "50"),
        "{exemplars}"
    );
    let bucket_of_exemplar: Vec<&str> = exemplars
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["seriesLabels"]["le"].as_str())
        .collect();
    assert!(
        bucket_of_exemplar.iter().all(|le| *le == "100"),
        "{exemplars}"
    );
}

// -----------------------------------------------------------------------------------------------------
// Fault-injection sinks

/// One request a [`ScriptedSink`] received.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    body_len: usize,
}

/// A minimal HTTP/1.1 server on 127.0.0.1 that answers each request with the next `(status,
/// Retry-After)` of its script (200 once the script is used up) and records when requests arrived.
struct ScriptedSink {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ScriptedSink {
    fn start(script: Vec<(u16, Option<u64>)>, repeat_last: bool) -> ScriptedSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the sink");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (received2, stop2) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut script = script
                .into_iter()
                .collect::<std::collections::VecDeque<_>>();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        serve(stream, &mut script, repeat_last, &received2, &stop2);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ScriptedSink {
            port,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for ScriptedSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves the requests of one keep-alive connection.
fn serve(
    stream: TcpStream,
    script: &mut std::collections::VecDeque<(u16, Option<u64>)>,
    repeat_last: bool,
    received: &Mutex<Vec<Received>>,
    stop: &AtomicBool,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reader = BufReader::new(stream.try_clone().expect("cloning the stream"));
    let mut writer = stream;
    while !stop.load(Ordering::Relaxed) {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        received.lock().unwrap().push(Received {
            at: Instant::now(),
            body_len: body.len(),
        });
        let (status, retry_after) = match script.pop_front() {
            Some(s) => {
                if repeat_last && script.is_empty() {
                    script.push_back(s);
                }
                s
            }
            None => (200, None),
        };
        let mut head = format!("HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\n");
        if let Some(secs) = retry_after {
            head.push_str(&format!("Retry-After: {secs}\r\n"));
        }
        head.push_str("\r\n");
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

/// Sends `n` gauge points in one OTLP request to outpost's gRPC port.
fn send_points(grpc: u16, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = gen::grpc_channel(grpc).await;
        gen::grpc_raw(
            channel,
            METRICS_PATH,
            gen::metrics(n, "fault-test").encode_to_vec(),
            None,
        )
        .await
        .expect("outpost accepts the metrics");
    });
}

const FAST_RETRY: &str = "    retry_on_failure:\n      initial_interval: 50ms\n      max_interval: 200ms\n      \
                          randomization_factor: 0\n    circuit_breaker:\n      failure_threshold: 100\n";

#[test]
fn a_permanent_400_is_dropped_and_counted_not_retried() {
    let sink = ScriptedSink::start(vec![(400, None)], true);
    let grpc = free_port();
    let agent = Agent::start(&agent_config(grpc, &sink.url(), FAST_RETRY));
    send_points(grpc, 50);

    let failed_q = r#"outpost_exporter_send_failed_items_total{exporter="prometheusremotewrite",reason="http_400"}"#;
    wait_for(
        Duration::from_secs(30),
        "the refused points to be counted",
        || (agent.metric(failed_q) >= 50.0).then_some(()),
        || format!("{}\n{}", agent.metrics_text(), agent.log()),
    );
    // Retries would come every 50-200 ms; a second of silence shows there are none.
    std::thread::sleep(Duration::from_secs(1));
    let received = sink.received();
    assert_eq!(
        received.len(),
        1,
        "one request, never retried: {received:?}"
    );
    assert!(received[0].body_len > 0);
    let text = agent.metrics_text();
    let m = |q: &str| outpost_integration::sum_metric(&text, q);
    assert_eq!(m(failed_q), 50.0, "{text}");
    assert_eq!(
        m(r#"outpost_exporter_send_retries_total{exporter="prometheusremotewrite"}"#),
        0.0,
        "{text}"
    );
    assert_eq!(
        m(r#"outpost_exporter_sent_items_total{exporter="prometheusremotewrite"}"#),
        0.0,
        "{text}"
    );
}

#[test]
fn retry_after_on_429_and_503_is_honoured() {
    // Retry-After 1 s, then 2 s, then accepted. Without it the backoff would retry after 50 ms.
    let sink = ScriptedSink::start(vec![(429, Some(1)), (503, Some(2))], false);
    let grpc = free_port();
    let agent = Agent::start(&agent_config(grpc, &sink.url(), FAST_RETRY));
    send_points(grpc, 20);

    let sent_q = r#"outpost_exporter_sent_items_total{exporter="prometheusremotewrite"}"#;
    wait_for(
        Duration::from_secs(30),
        "the points to be delivered after the retries",
        || (agent.metric(sent_q) >= 20.0).then_some(()),
        || {
            format!(
                "{:?}\n{}\n{}",
                sink.received(),
                agent.metrics_text(),
                agent.log()
            )
        },
    );
    let r = sink.received();
    assert_eq!(r.len(), 3, "{r:?}");
    let (gap1, gap2) = (r[1].at - r[0].at, r[2].at - r[1].at);
    assert!(
        gap1 >= Duration::from_secs(1),
        "429 Retry-After: 1 honoured: {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_secs(2),
        "503 Retry-After: 2 honoured: {gap2:?}"
    );
    // The same request each time: the queued payload is retried, not dropped or changed.
    assert_eq!(r[0].body_len, r[2].body_len);
    let text = agent.metrics_text();
    let m = |q: &str| outpost_integration::sum_metric(&text, q);
    assert_eq!(
        m(
            r#"outpost_exporter_send_retries_total{exporter="prometheusremotewrite",reason="http_429"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        m(
            r#"outpost_exporter_send_retries_total{exporter="prometheusremotewrite",reason="http_503"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        m(r#"outpost_exporter_send_failed_items_total{exporter="prometheusremotewrite"}"#),
        0.0,
        "{text}"
    );
    assert_eq!(m(sent_q), 20.0, "{text}");
}

#[test]
fn a_refused_request_of_several_drops_only_its_points() {
    // 50 points, 20 samples per request: requests of 20, 20 and 10 points; the second is refused.
    let sink = ScriptedSink::start(vec![(200, None), (400, None)], false);
    let grpc = free_port();
    let extra = format!(
        "{FAST_RETRY}    max_samples_per_request: 20\n    target_info:\n      enabled: false\n"
    );
    let agent = Agent::start(&agent_config(grpc, &sink.url(), &extra));
    send_points(grpc, 50);

    let sent_q = r#"outpost_exporter_sent_items_total{exporter="prometheusremotewrite"}"#;
    let failed_q = r#"outpost_exporter_send_failed_items_total{exporter="prometheusremotewrite",reason="http_400"}"#;
    wait_for(
        Duration::from_secs(30),
        "the payload to be done",
        || (agent.metric(sent_q) + agent.metric(failed_q) >= 50.0).then_some(()),
        || {
            format!(
                "{:?}\n{}\n{}",
                sink.received(),
                agent.metrics_text(),
                agent.log()
            )
        },
    );
    let text = agent.metrics_text();
    let m = |q: &str| outpost_integration::sum_metric(&text, q);
    assert_eq!(m(failed_q), 20.0, "{text}");
    assert_eq!(m(sent_q), 30.0, "{text}");
    assert_eq!(sink.received().len(), 3, "no request sent twice");
}
