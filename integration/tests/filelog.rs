//! The `filelog` receiver against a real writer: a separate process (integration/python/logwriter.py)
//! appends numbered lines to several files and rotates them — by rename + create and by copytruncate,
//! alternately — while outpost tails them into its queue and a `file` exporter writes what leaves the
//! queue. Outpost is stopped in the middle (SIGTERM, or SIGKILL) while the writer goes on writing and
//! rotating, and started again on the same data directory.
//!
//! After a clean stop every line must arrive exactly once: the checkpoints resume exactly after the
//! last line durably queued, and the exporter's cursor after the last record written. After SIGKILL
//! every line must arrive at least once (lines queued but not yet checkpointed may come twice).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outpost_integration::otlp_json::{self, Signal};
use outpost_integration::{outpost_bin, wait_for, workspace_root, Agent};

const FILES: usize = 3;
const LINES_PER_FILE: usize = 1500;
const ROTATE_EVERY: usize = 250;
/// Pause between rounds of lines (one line per file per round): the writing takes several seconds, so
/// the restart falls in the middle of it.
const SLEEP_MS: u64 = 2;

/// The writer process; killed if the test ends before it does.
struct Writer(Child);

impl Writer {
    fn start(dir: &Path) -> Writer {
        let script = workspace_root().join("integration/python/logwriter.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(dir)
            .args([
                FILES.to_string(),
                LINES_PER_FILE.to_string(),
                ROTATE_EVERY.to_string(),
                SLEEP_MS.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the log writer");
        Writer(child)
    }

    fn wait(&mut self, timeout: Duration) {
        let status = wait_for(
            timeout,
            "the log writer to finish",
            || self.0.try_wait().expect("waiting for the writer"),
            || "still writing".into(),
        );
        assert!(status.success(), "the log writer failed: {status}");
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn config(logs: &Path, out: &Path) -> String {
    format!(
        r#"
receivers:
  filelog:
    include: ["{logs}/*.log*"]
    start_at: beginning
    poll_interval: 50ms
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
      receivers: [filelog]
      exporters: [file]
"#,
        logs = logs.display(),
        out = out.display()
    )
}

/// How often each line body arrived at the sink.
fn arrivals(out: &Path) -> BTreeMap<String, u32> {
    let mut seen = BTreeMap::new();
    for item in otlp_json::items(Signal::Logs, &otlp_json::read_requests(out)) {
        let body = item
            .value
            .get("body")
            .and_then(|b| b.get("stringValue"))
            .and_then(|s| s.as_str())
            .unwrap_or("<no string body>")
            .to_owned();
        *seen.entry(body).or_insert(0) += 1;
    }
    seen
}

fn expected() -> Vec<String> {
    (0..FILES)
        .flat_map(|f| (0..LINES_PER_FILE).map(move |s| format!("f{f} {s:08}")))
        .collect()
}

struct Report {
    lost: Vec<String>,
    duplicated: usize,
    unexpected: Vec<String>,
}

fn report(seen: &BTreeMap<String, u32>) -> Report {
    let expected = expected();
    let lost = expected
        .iter()
        .filter(|l| !seen.contains_key(*l))
        .cloned()
        .collect();
    let duplicated = seen.values().map(|n| n.saturating_sub(1) as usize).sum();
    let known: std::collections::HashSet<&String> = expected.iter().collect();
    let unexpected = seen
        .keys()
        .filter(|k| !known.contains(k))
        .cloned()
        .collect();
    Report {
        lost,
        duplicated,
        unexpected,
    }
}

/// Runs the writer, stops outpost part-way (`kill9` or SIGTERM), starts it again, and waits until every
/// line has arrived. Returns what arrived.
fn tail_through_a_restart(kill9: bool) -> BTreeMap<String, u32> {
    let tmp = tempfile::Builder::new()
        .prefix("outpost-it-filelog-")
        .tempdir()
        .unwrap();
    let logs: PathBuf = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let out = tmp.path().join("out.jsonl");
    let data = tmp.path().join("data");
    let config = config(&logs, &out);

    // Build (or find) the binary first, so the writer's seconds are not spent compiling.
    outpost_bin();
    let mut writer = Writer::start(&logs);
    let mut first = Agent::spawn(&config, Some(&data), &[]);
    first.wait_ready();
    let part = FILES * LINES_PER_FILE / 6;
    wait_for(
        Duration::from_secs(30),
        "part of the lines to arrive before the restart",
        || (arrivals(&out).len() >= part).then_some(()),
        || format!("{} of {part} lines", arrivals(&out).len()),
    );
    if kill9 {
        first.kill9();
    } else {
        first.sigterm();
        let status = first.wait_exit(Duration::from_secs(20));
        assert!(status.success(), "clean stop: {status}\n{}", first.log());
    }
    let before = arrivals(&out).len();
    let first_log = first.log();
    drop(first);
    // The writer goes on, and rotates, while outpost is down.
    std::thread::sleep(Duration::from_millis(300));

    let second = Agent::spawn(&config, Some(&data), &[]);
    let mut second = second;
    second.wait_ready();
    writer.wait(Duration::from_secs(120));
    let total = FILES * LINES_PER_FILE;
    wait_for(
        Duration::from_secs(60),
        "every line at the sink",
        || (report(&arrivals(&out)).lost.is_empty()).then_some(()),
        || {
            let r = report(&arrivals(&out));
            format!(
                "{} of {total} lines missing (first: {:?})\n{}",
                r.lost.len(),
                r.lost.first(),
                second.metrics_text()
            )
        },
    );
    // Let anything that would arrive twice arrive, then stop cleanly.
    std::thread::sleep(Duration::from_millis(500));
    second.sigterm();
    assert!(second.wait_exit(Duration::from_secs(20)).success());
    let seen = arrivals(&out);
    eprintln!(
        "{} lines before the {}, {} after; {} duplicates",
        before,
        if kill9 { "SIGKILL" } else { "SIGTERM" },
        seen.len(),
        report(&seen).duplicated
    );
    for log in [&first_log, &second.log()] {
        assert!(!log.contains("panicked"), "{log}");
    }
    seen
}

#[test]
fn every_line_exactly_once_across_rotations_and_a_clean_restart() {
    let seen = tail_through_a_restart(false);
    let r = report(&seen);
    assert!(r.lost.is_empty(), "lost: {:?}", r.lost);
    assert!(
        r.unexpected.is_empty(),
        "torn or foreign lines: {:?}",
        r.unexpected
    );
    let twice: Vec<(&String, &u32)> = seen.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert_eq!(
        r.duplicated, 0,
        "after a clean restart nothing may arrive twice; e.g. {twice:?}"
    );
}

#[test]
fn every_line_at_least_once_across_rotations_and_sigkill() {
    let seen = tail_through_a_restart(true);
    let r = report(&seen);
    assert!(r.lost.is_empty(), "lost after SIGKILL: {:?}", r.lost);
    assert!(
        r.unexpected.is_empty(),
        "torn or foreign lines: {:?}",
        r.unexpected
    );
}
