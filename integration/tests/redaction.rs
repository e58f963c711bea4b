//! No PII ever leaves the redaction processor: the real OpenTelemetry Python SDK sends spans, logs and
//! metrics carrying seeded PII and secrets (in resource attributes, span names, span, event and metric
//! point attributes, status messages, string and map log bodies; see integration/python/send_pii.py) to
//! an outpost whose pipelines start with `redaction`. None of the seeded values may appear:
//!
//! - in what is exported (the `file` exporters' OTLP JSON),
//! - in the disk queue: a second exporter points at a port nobody listens on, so every record stays
//!   queued; after outpost stops, the queue is opened with outpost's own reader and every record's
//!   payload is decompressed and searched (zstd would hide a leak from a byte search of the files), and
//!   every file under the data directory is searched raw as well (WAL, SSTs, state),
//! - in outpost's own log, with a `debug` exporter at `verbosity: detailed` printing every item and the
//!   log level at debug.
//!
//! Each search has a positive control: the run id, which is not PII and is sent next to the seeds, must
//! be found in the same place, so a search that could not see the data fails instead of passing.
//! Seeds are random per run (printed, replayable with OUTPOST_TEST_SEED).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outpost_integration::otlp_json::{self, Signal};
use outpost_integration::{free_port, python::python, run_with_timeout, wait_for, Agent, Rng};
use outpost_pipelines::queue::{Overflow, Queue, QueueOptions, StartAt, SyncPolicy};
use outpost_pipelines::Telemetry;

/// Spans and log records the script sends; metric points are a tenth of it.
const N: usize = 60;

struct Seeds {
    values: Vec<(&'static str, String)>,
}

impl Seeds {
    fn new(rng: &mut Rng) -> Seeds {
        let hex = |rng: &mut Rng, n: usize| -> String {
            (0..n)
                .map(|_| char::from(b"0123456789abcdef"[rng.range(0, 15) as usize]))
                .collect()
        };
        let digits = |rng: &mut Rng, n: usize| -> Vec<u8> {
            (0..n).map(|_| rng.range(0, 9) as u8).collect()
        };
        // A Visa number with a valid Luhn check digit.
        let mut card = vec![4u8];
        card.extend(digits(rng, 14));
        let check = (0..10u8)
            .find(|c| {
                let mut d = card.clone();
                d.push(*c);
                luhn(&d)
            })
            .expect("a check digit exists");
        card.push(check);
        let card: String = card.iter().map(|d| char::from(b'0' + d)).collect();
        let ssn = format!(
            "{:03}-{:02}-{:04}",
            rng.range(100, 665),
            rng.range(10, 99),
            rng.range(1000, 9999)
        );
        let jwt = format!(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI{}In0.{}",
            hex(rng, 12),
            hex(rng, 43)
        );
        let bban: String = digits(rng, 18)
            .iter()
            .map(|d| char::from(b'0' + d))
            .collect();
        let iban = german_iban(&bban);
        Seeds {
            values: vec![
                ("email", format!("pii.{}@example.org", hex(rng, 10))),
                ("card", card),
                ("ssn", ssn),
                ("jwt", jwt),
                ("password", format!("pw-{}", hex(rng, 12))),
                ("token", format!("tok{}", hex(rng, 20))),
                ("iban", iban),
                ("phone", format!("+44 20 7946 {}", rng.range(1000, 9999))),
            ],
        }
    }

    fn json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .values
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::Value::Object(map).to_string()
    }

    /// Every seeded value found in `haystack`, by name.
    fn found_in(&self, haystack: &[u8]) -> Vec<&'static str> {
        self.values
            .iter()
            .filter(|(_, v)| contains(haystack, v.as_bytes()))
            .map(|(k, _)| *k)
            .collect()
    }
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x) * if i % 2 == 1 { 2 } else { 1 };
            if x > 9 {
                x - 9
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A German IBAN for an 18-digit BBAN, with its ISO 7064 mod-97 check digits.
fn german_iban(bban: &str) -> String {
    // Rearranged: BBAN, then "DE" as 13 14, then "00".
    let numeric = format!("{bban}131400");
    let rem = numeric
        .bytes()
        .fold(0u32, |r, b| (r * 10 + u32::from(b - b'0')) % 97);
    format!("DE{:02}{bban}", 98 - rem)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn config(grpc: u16, blackhole: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  redaction:
    summary: debug
  batch:
    send_batch_size: 64
    timeout: 100ms
exporters:
  file/traces:
    path: "@DIR@/traces.jsonl"
  file/metrics:
    path: "@DIR@/metrics.jsonl"
  file/logs:
    path: "@DIR@/logs.jsonl"
  debug:
    verbosity: detailed
  otlp/blackhole:
    endpoint: 127.0.0.1:{blackhole}
    timeout: 1s
extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
service:
  extensions: [health_check]
  telemetry:
    logs:
      level: debug
  pipelines:
    traces:
      receivers: [otlp]
      processors: [redaction, batch]
      exporters: [file/traces, debug, otlp/blackhole]
    metrics:
      receivers: [otlp]
      processors: [redaction, batch]
      exporters: [file/metrics, debug, otlp/blackhole]
    logs:
      receivers: [otlp]
      processors: [redaction, batch]
      exporters: [file/logs, debug, otlp/blackhole]
"#
    )
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("reading the data dir")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every record payload (decompressed) of every stream, and the items they hold.
fn queued_payloads(data_dir: &Path) -> (Vec<u8>, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let queue = Queue::open(
            QueueOptions {
                directory: data_dir.join("queue"),
                max_size: 1 << 30,
                high_watermark: 1 << 29,
                low_watermark: 1 << 28,
                overflow: Overflow::Block,
                sync: SyncPolicy::Never,
                max_age: None,
            },
            &Telemetry::new(),
        )
        .expect("opening the stopped agent's queue");
        let mut all = Vec::new();
        let mut items = 0u64;
        for stream in ["traces", "metrics", "logs"] {
            let mut cursor = queue
                .stream(stream)
                .expect("stream")
                .cursor("redaction-audit", StartAt::Oldest, None)
                .expect("cursor");
            while let Ok(Ok(records)) =
                tokio::time::timeout(Duration::from_secs(2), cursor.next_batch(64)).await
            {
                if records.is_empty() {
                    break;
                }
                for r in records {
                    items += u64::from(r.items);
                    all.extend_from_slice(&r.payload);
                    cursor.ack(r.seq).expect("ack");
                }
            }
        }
        queue.close().await;
        (all, items)
    })
}

#[test]
fn seeded_pii_from_the_sdk_never_leaves_the_redaction_processor() {
    let python = python();
    let seed = Rng::seed_from_env("OUTPOST_TEST_SEED");
    let seeds = Seeds::new(&mut Rng::new(seed));
    let run_id = format!("redaction-run-{seed:x}");
    let grpc = free_port();
    // Nothing listens here: that exporter never delivers, so every record stays in the queue.
    let blackhole = free_port();
    let mut agent = Agent::start(&config(grpc, blackhole));

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/send_pii.py");
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
            .args(["--run-id", &run_id, "--count", &N.to_string()])
            .arg("--seeds")
            .arg(seeds.json())
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

    let expected = [
        (Signal::Traces, N),
        (Signal::Metrics, N / 10),
        (Signal::Logs, N),
    ];
    let dir = agent.dir().to_path_buf();
    let file = |s: Signal| dir.join(format!("{}.jsonl", s.as_str()));
    wait_for(
        Duration::from_secs(60),
        "every item in the exported files",
        || {
            expected
                .iter()
                .all(|(s, n)| otlp_json::count_items(&file(*s), *s) >= *n)
                .then_some(())
        },
        || {
            format!(
                "{:?}",
                expected.map(|(s, _)| otlp_json::count_items(&file(s), s))
            )
        },
    );

    // Every kind of seed was found by a rule (the counters move as the processor redacts).
    let metrics = agent.metrics_text();
    for rule in [
        "email",
        "payment_card",
        "us_ssn",
        "jwt",
        "url_password",
        "url_query_param",
        "iban",
        "phone_e164",
    ] {
        let q = format!(r#"outpost_redactions_total{{rule="{rule}"}}"#);
        assert!(
            outpost_integration::sum_metric(&metrics, &q) > 0.0,
            "{q} is 0\n{metrics}"
        );
    }
    for signal in ["traces", "metrics", "logs"] {
        let q = format!(r#"outpost_redactions_total{{rule="email",signal="{signal}"}}"#);
        assert!(outpost_integration::sum_metric(&metrics, &q) > 0.0, "{q}");
    }

    agent.sigterm();
    agent.wait_exit(Duration::from_secs(30));

    // 1. What was exported.
    for (signal, _) in expected {
        let bytes = std::fs::read(file(signal)).expect("exported file");
        assert!(
            contains(&bytes, run_id.as_bytes()),
            "control: the run id is in {signal:?}"
        );
        let leaked = seeds.found_in(&bytes);
        assert!(
            leaked.is_empty(),
            "{leaked:?} exported in {signal:?}:\n{}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // The redaction left its audit trail (summary: debug) and kept what is not PII.
    let traces = std::fs::read_to_string(file(Signal::Traces)).unwrap();
    assert!(traces.contains("redaction.masked.keys"), "{traces}");
    assert!(
        traces.contains("checkout 1"),
        "span names without PII are kept"
    );

    // 2. The disk queue, decompressed record by record.
    let (payloads, items) = queued_payloads(agent.data_dir());
    let total: usize = expected.iter().map(|(_, n)| n).sum();
    assert_eq!(
        items, total as u64,
        "every item is still queued for the blackholed exporter"
    );
    assert!(
        contains(&payloads, run_id.as_bytes()),
        "control: the run id is in the queued payloads"
    );
    let leaked = seeds.found_in(&payloads);
    assert!(leaked.is_empty(), "{leaked:?} in the queue's records");

    // 3. Every file under the data directory, raw.
    let mut files = Vec::new();
    files_under(agent.data_dir(), &mut files);
    assert!(!files.is_empty());
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        let leaked = seeds.found_in(&bytes);
        assert!(leaked.is_empty(), "{leaked:?} in {}", f.display());
    }

    // 4. outpost's own log, which printed every item (debug exporter, detailed).
    let log = agent.log();
    assert!(
        log.contains(&run_id),
        "control: the debug exporter printed the items"
    );
    let leaked = seeds.found_in(log.as_bytes());
    assert!(leaked.is_empty(), "{leaked:?} in outpost's log");
}
