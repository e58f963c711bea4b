//! The headline test: the real OpenTelemetry Python SDK sends traces, metrics and logs to a "front"
//! outpost (memory_limiter + batch, then the `otlp` exporter, gRPC with gzip) which forwards them to a
//! "sink" outpost that writes them to files. Everything must arrive exactly once and intact: resource,
//! scope, attributes with their types, trace structure, metric values, log bodies and severities. Once
//! over OTLP/gRPC and once over OTLP/HTTP (protobuf, gzip).
//!
//! What the script sends is described in integration/python/send.py; the checks below mirror it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outpost_integration::otlp_json::{self, Attr, Item, Signal};
use outpost_integration::{free_port, python::python, run_with_timeout, wait_for, Agent};

/// Items of each signal the script sends.
const N: usize = 1000;

fn sink_config(grpc_port: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
exporters:
  file/traces:
    path: "@DIR@/traces.jsonl"
  file/metrics:
    path: "@DIR@/metrics.jsonl"
  file/logs:
    path: "@DIR@/logs.jsonl"
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
      exporters: [file/traces]
    metrics:
      receivers: [otlp]
      exporters: [file/metrics]
    logs:
      receivers: [otlp]
      exporters: [file/logs]
"#
    )
}

fn front_config(grpc_port: u16, http_port: u16, sink_grpc_port: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
      http:
        endpoint: 127.0.0.1:{http_port}
processors:
  memory_limiter:
    limit_mib: 256
  batch:
    send_batch_size: 400
    timeout: 200ms
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink_grpc_port}
    compression: gzip
    timeout: 10s
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
      processors: [memory_limiter, batch]
      exporters: [otlp]
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [otlp]
    logs:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [otlp]
"#
    )
}

fn sink_file(sink: &Agent, signal: Signal) -> PathBuf {
    sink.dir().join(format!("{}.jsonl", signal.as_str()))
}

fn counts(sink: &Agent) -> BTreeMap<&'static str, usize> {
    Signal::ALL
        .iter()
        .map(|s| (s.as_str(), otlp_json::count_items(&sink_file(sink, *s), *s)))
        .collect()
}

fn roundtrip(transport: &str) {
    // The interpreter first: a broken venv should fail the test before any agent starts.
    let python = python();
    let sink_grpc = free_port();
    let sink = Agent::start(&sink_config(sink_grpc));
    let (front_grpc, front_http) = (free_port(), free_port());
    let front = Agent::start(&front_config(front_grpc, front_http, sink_grpc));

    let port = if transport == "grpc" {
        front_grpc
    } else {
        front_http
    };
    let run_id = format!("{transport}-{}", std::process::id());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/send.py");
    let mut cmd = Command::new(&python);
    // Inherited OTEL_* settings (endpoints, headers, compression) would change what the SDK does.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(key);
        }
    }
    let sent = run_with_timeout(
        cmd.arg(&script)
            .args(["--transport", transport, "--endpoint"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--run-id", &run_id, "--count", &N.to_string()])
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

    // All of it reaches the sink...
    wait_for(
        Duration::from_secs(60),
        "every item at the sink",
        || counts(&sink).values().all(|c| *c >= N).then_some(()),
        || format!("{:?}", counts(&sink)),
    );
    // ...and the front has finished sending (its counters move after the sink answered), so nothing
    // more can arrive: the counts below are final.
    for signal in Signal::ALL {
        let q = format!(
            r#"outpost_exporter_sent_items_total{{exporter="otlp",signal="{}"}}"#,
            signal.as_str()
        );
        wait_for(
            Duration::from_secs(30),
            &q,
            || (front.metric(&q) >= N as f64).then_some(()),
            || front.metrics_text(),
        );
    }

    for signal in Signal::ALL {
        let items = otlp_json::items(signal, &otlp_json::read_requests(&sink_file(&sink, signal)));
        assert_eq!(
            items.len(),
            N,
            "{} at the sink: exactly {N} (no loss, no duplicate)",
            signal.as_str()
        );
        for item in &items {
            check_resource(item, &run_id, transport);
        }
        match signal {
            Signal::Traces => check_traces(&items),
            Signal::Metrics => check_metrics(&items),
            Signal::Logs => check_logs(&items),
        }
    }

    // The front's own account of it.
    let text = front.metrics_text();
    let m = |q: &str| outpost_integration::sum_metric(&text, q);
    for s in ["traces", "metrics", "logs"] {
        assert_eq!(
            m(&format!(
                r#"outpost_receiver_accepted_items_total{{receiver="otlp",transport="{transport}",signal="{s}"}}"#
            )),
            N as f64,
            "front accepted {s}\n{text}"
        );
        assert_eq!(
            m(&format!(
                r#"outpost_exporter_sent_items_total{{exporter="otlp",signal="{s}"}}"#
            )),
            N as f64,
            "front sent {s}\n{text}"
        );
        for stage in ["memory_limiter", "batch"] {
            for dir in ["incoming", "outgoing"] {
                assert_eq!(
                    m(&format!(
                        r#"outpost_processor_{dir}_items_total{{pipeline="{s}",processor="{stage}"}}"#
                    )),
                    N as f64,
                    "{s}/{stage} {dir}\n{text}"
                );
            }
        }
    }
    for q in [
        "outpost_receiver_refused_items_total",
        "outpost_receiver_refused_requests_total",
        "outpost_processor_dropped_items_total",
        "outpost_exporter_send_failed_items_total",
    ] {
        assert_eq!(m(q), 0.0, "{q} must be 0 on a clean run\n{text}");
    }
    let sink_text = sink.metrics_text();
    for s in ["traces", "metrics", "logs"] {
        let q =
            format!(r#"outpost_receiver_accepted_items_total{{transport="grpc",signal="{s}"}}"#);
        assert_eq!(
            outpost_integration::sum_metric(&sink_text, &q),
            N as f64,
            "sink {q}\n{sink_text}"
        );
    }
}

#[test]
fn python_sdk_over_grpc_arrives_exactly_once_and_intact() {
    roundtrip("grpc");
}

#[test]
fn python_sdk_over_http_arrives_exactly_once_and_intact() {
    roundtrip("http");
}

fn check_resource(item: &Item, run_id: &str, transport: &str) {
    let r = &item.resource;
    assert_eq!(
        r.get("service.name"),
        Some(&Attr::Str("outpost-sdk-roundtrip".into())),
        "{r:?}"
    );
    assert_eq!(
        r.get("outpost.test.run"),
        Some(&Attr::Str(run_id.into())),
        "{r:?}"
    );
    assert_eq!(
        r.get("outpost.test.transport"),
        Some(&Attr::Str(transport.into())),
        "{r:?}"
    );
    assert_eq!(
        r.get("telemetry.sdk.language"),
        Some(&Attr::Str("python".into())),
        "{r:?}"
    );
}

/// The item's `<prefix>.index` attribute, which the script sets on every item.
fn index(item: &Item, key: &str) -> usize {
    match item.attr(key) {
        Some(Attr::Int(i)) if *i >= 0 => *i as usize,
        other => panic!(
            "{key} should be a non-negative int, is {other:?}: {}",
            item.value
        ),
    }
}

/// Maps each item to its index and checks the indices are exactly 0..n, each once.
fn by_index<'a>(items: &'a [Item], key: &str, n: usize) -> Vec<&'a Item> {
    let mut slots: Vec<Option<&Item>> = vec![None; n];
    for item in items {
        let i = index(item, key);
        assert!(i < n, "{key}={i} out of range");
        assert!(slots[i].is_none(), "{key}={i} arrived twice");
        slots[i] = Some(item);
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.unwrap_or_else(|| panic!("{key}={i} is missing")))
        .collect()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_traces(items: &[Item]) {
    let spans = by_index(items, "span.index", N);
    let mut trace_ids = HashSet::new();
    for (i, s) in spans.iter().enumerate() {
        assert_eq!(
            (s.scope_name.as_str(), s.scope_version.as_str()),
            ("outpost.integration.traces", "1.2.3")
        );
        let t = i / 4;
        let (role, kind) = match i % 4 {
            0 => ("root", 2),
            1 => ("child", 1),
            2 => ("grandchild", 1),
            _ => ("sibling", 3),
        };
        assert_eq!(s.str_field("name"), format!("{role}-{i}"));
        assert_eq!(s.int_field("kind"), Some(kind), "span {i} kind");
        assert_eq!(
            s.attr("span.even"),
            Some(&Attr::Bool(i % 2 == 0)),
            "span {i}"
        );
        assert_eq!(
            s.attr("span.ratio"),
            Some(&Attr::Double(i as f64 / 8.0)),
            "span {i}"
        );
        assert_eq!(
            s.attr("span.label"),
            Some(&Attr::Str(format!("label-{i}"))),
            "span {i}"
        );
        assert_eq!(s.attr("span.trace"), Some(&Attr::Int(t as i64)), "span {i}");
        assert!(
            is_hex(s.str_field("traceId"), 32),
            "traceId as 32 hex digits: {}",
            s.value
        );
        assert!(
            is_hex(s.str_field("spanId"), 16),
            "spanId as 16 hex digits: {}",
            s.value
        );
        let (start, end) = (
            s.int_field("startTimeUnixNano").unwrap_or(0),
            s.int_field("endTimeUnixNano").unwrap_or(0),
        );
        assert!(start > 0 && end >= start, "span {i} times {start}..{end}");
        trace_ids.insert(s.str_field("traceId").to_owned());
    }
    assert_eq!(trace_ids.len(), N / 4, "one trace per group of four spans");

    for t in 0..N / 4 {
        let [root, child, grandchild, sibling] = [0, 1, 2, 3].map(|k| spans[4 * t + k]);
        for s in [child, grandchild, sibling] {
            assert_eq!(
                s.str_field("traceId"),
                root.str_field("traceId"),
                "trace {t}"
            );
        }
        assert_eq!(root.str_field("parentSpanId"), "", "root {t} has no parent");
        assert_eq!(
            child.str_field("parentSpanId"),
            root.str_field("spanId"),
            "child of root {t}"
        );
        assert_eq!(
            sibling.str_field("parentSpanId"),
            root.str_field("spanId"),
            "sibling of trace {t}"
        );
        assert_eq!(
            grandchild.str_field("parentSpanId"),
            child.str_field("spanId"),
            "grandchild {t}"
        );

        let status = &grandchild.value["status"];
        assert_eq!(
            status["code"].as_i64(),
            Some(2),
            "grandchild status ERROR: {status}"
        );
        assert_eq!(
            status["message"].as_str(),
            Some(format!("boom-{}", 4 * t + 2).as_str())
        );

        let events = root.value["events"].as_array().expect("root has events");
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["name"].as_str(), Some("root.started"));
        assert_eq!(
            otlp_json::attrs(&events[0]).get("event.index"),
            Some(&Attr::Int(4 * t as i64))
        );
    }
}

fn check_metrics(items: &[Item]) {
    let mut per_name: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    for item in items {
        assert_eq!(
            (item.scope_name.as_str(), item.scope_version.as_str()),
            ("outpost.integration.metrics", "4.5.6")
        );
        let m = item
            .metric
            .as_ref()
            .expect("metric items carry their metric");
        per_name.entry(m.name.as_str()).or_default().push(item);
    }
    let names: Vec<&str> = per_name.keys().copied().collect();
    assert_eq!(
        names,
        [
            "outpost.test.depth",
            "outpost.test.latency",
            "outpost.test.requests"
        ]
    );

    let owned = |v: &[&Item]| v.iter().map(|i| (*i).clone()).collect::<Vec<Item>>();
    let requests = owned(&per_name["outpost.test.requests"]);
    for (i, p) in by_index(&requests, "point.index", 6 * N / 10)
        .iter()
        .enumerate()
    {
        let m = p.metric.as_ref().unwrap();
        assert_eq!((m.kind.as_str(), m.unit.as_str()), ("sum", "1"));
        assert_eq!(m.is_monotonic, Some(true), "a counter is monotonic");
        assert_eq!(
            p.int_field("asInt"),
            Some(i as i64 + 1),
            "requests point {i}: {}",
            p.value
        );
    }
    let latency = owned(&per_name["outpost.test.latency"]);
    for (i, p) in by_index(&latency, "point.index", 3 * N / 10)
        .iter()
        .enumerate()
    {
        let m = p.metric.as_ref().unwrap();
        assert_eq!((m.kind.as_str(), m.unit.as_str()), ("histogram", "ms"));
        assert_eq!(
            p.int_field("count"),
            Some(1),
            "latency point {i}: {}",
            p.value
        );
        assert_eq!(
            p.value["sum"].as_f64(),
            Some(i as f64 * 0.5),
            "latency point {i}"
        );
        let buckets: i64 = p.value["bucketCounts"]
            .as_array()
            .expect("bucketCounts")
            .iter()
            .map(|b| {
                b.as_i64()
                    .or_else(|| b.as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(buckets, 1, "latency point {i} buckets: {}", p.value);
    }
    let depth = owned(&per_name["outpost.test.depth"]);
    for (i, p) in by_index(&depth, "point.index", N / 10).iter().enumerate() {
        let m = p.metric.as_ref().unwrap();
        assert_eq!(m.kind, "sum");
        assert_ne!(
            m.is_monotonic,
            Some(true),
            "an up-down counter is not monotonic"
        );
        assert_eq!(
            p.int_field("asInt"),
            Some(-(i as i64)),
            "depth point {i}: {}",
            p.value
        );
    }
}

fn check_logs(items: &[Item]) {
    for (i, r) in by_index(items, "log.index", N).iter().enumerate() {
        assert_eq!(r.scope_name, "outpost.integration.logs");
        assert_eq!(
            r.value["body"]["stringValue"].as_str(),
            Some(format!("log message {i}").as_str()),
            "log {i}: {}",
            r.value
        );
        let (number, text) = [(9, "INFO"), (13, "WARN"), (17, "ERROR"), (5, "DEBUG")][i % 4];
        assert_eq!(
            r.int_field("severityNumber"),
            Some(number),
            "log {i}: {}",
            r.value
        );
        assert_eq!(r.str_field("severityText"), text, "log {i}");
        assert_eq!(r.attr("log.even"), Some(&Attr::Bool(i % 2 == 0)), "log {i}");
        assert_eq!(
            r.attr("log.ratio"),
            Some(&Attr::Double(i as f64 / 4.0)),
            "log {i}"
        );
        assert!(
            r.int_field("timeUnixNano").unwrap_or(0) > 0,
            "log {i} has a timestamp"
        );
    }
}
