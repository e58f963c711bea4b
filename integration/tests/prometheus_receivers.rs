//! The Prometheus receivers against the real thing: outpost scrapes a real `prometheus-node-exporter`
//! and a target this test serves, and takes remote-write from a real Prometheus in agent mode. What
//! comes out is read from outpost's `file` exporter (OTLP JSON) and compared with what went in: names,
//! values, attributes, types, resources. Malformed input (a broken page, a broken remote-write body) is
//! reported and outpost keeps running.
//!
//! Needs `/usr/bin/prometheus-node-exporter` and `/usr/bin/prometheus` (Debian packages
//! `prometheus-node-exporter` and `prometheus`; .ci/run installs them).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_integration::otlp_json::{self, Attr, Item, Signal};
use outpost_integration::{free_port, http_get, wait_for, Agent};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// The test target's page: every type, with values the assertions know.
const APP_PAGE: &str = r#"# HELP app_requests_total Requests served.
# TYPE app_requests_total counter
app_requests_total{code="200",path="/a,b"} 1027
app_requests_total{code="500",path="/"} 3
# HELP app_temperature_celsius Room temperature.
# TYPE app_temperature_celsius gauge
app_temperature_celsius{room="lab"} 21.5
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{le="0.1"} 2
app_latency_seconds_bucket{le="1"} 5
app_latency_seconds_bucket{le="+Inf"} 6
app_latency_seconds_sum 3.5
app_latency_seconds_count 6
# TYPE app_rpc_seconds summary
app_rpc_seconds{quantile="0.5"} 0.25
app_rpc_seconds{quantile="0.99"} 0.75
app_rpc_seconds_sum 10
app_rpc_seconds_count 40
"#;

// ---------------------------------------------------------------------------------------------------------
// Helpers

/// A child process (node exporter, Prometheus) killed with the test, even a failed one.
struct Proc {
    child: Child,
    name: &'static str,
    log: std::path::PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // SAFETY: prctl is async-signal-safe; the child dies with the test process.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e} (is it installed?)"));
        Proc {
            child,
            name,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("{} stopped", self.name);
    }
}

/// A tiny HTTP server answering every request with the current page; the page can be changed while it
/// runs. Stops when dropped.
struct Target {
    port: u16,
    page: Arc<Mutex<String>>,
    scrapes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Target {
    fn start(page: &str) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let page = Arc::new(Mutex::new(page.to_owned()));
        let scrapes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, st) = (page.clone(), scrapes.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let (mut stream, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                // Read the request head; the body (none for GET) is not needed.
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" || line == "\n" {
                        break;
                    }
                    line.clear();
                }
                s.fetch_add(1, Ordering::Relaxed);
                let body = p.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = stream.flush();
            }
        });
        Target {
            port,
            page,
            scrapes,
            stop,
        }
    }

    fn set_page(&self, page: &str) {
        *self.page.lock().unwrap() = page.to_owned();
    }

    fn scrapes(&self) -> usize {
        self.scrapes.load(Ordering::Relaxed)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn start_node_exporter(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let mut cmd = Command::new(NODE_EXPORTER);
    // A few collectors keep its pages quick and its values checkable against /proc.
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--collector.disable-defaults")
        .args([
            "--collector.meminfo",
            "--collector.loadavg",
            "--collector.uname",
            "--collector.cpu",
        ]);
    let p = Proc::spawn("node exporter", &mut cmd, &dir.join("node-exporter.log"));
    wait_for(
        Duration::from_secs(20),
        "the node exporter to serve /metrics",
        || {
            http_get(([127, 0, 0, 1], port).into(), "/metrics")
                .ok()
                .filter(|r| r.status == 200)
        },
        || p.log(),
    );
    (p, port)
}

fn points(path: &Path) -> Vec<Item> {
    otlp_json::items(Signal::Metrics, &otlp_json::read_requests(path))
}

fn named<'a>(items: &'a [Item], name: &str) -> Vec<&'a Item> {
    items
        .iter()
        .filter(|i| i.metric.as_ref().is_some_and(|m| m.name == name))
        .collect()
}

fn str_attr(s: &str) -> Attr {
    Attr::Str(s.to_owned())
}

fn number(item: &Item) -> Option<f64> {
    let v = item.value.get("asDouble")?;
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn flags(item: &Item) -> i64 {
    item.int_field("flags").unwrap_or(0)
}

/// Waits until `check` finds what it looks for in the file exporter's output.
fn wait_points<T>(
    agent: &Agent,
    what: &str,
    timeout: Duration,
    mut check: impl FnMut(&[Item]) -> Option<T>,
) -> T {
    let path = agent.dir().join("out.jsonl");
    wait_for(
        timeout,
        what,
        || check(&points(&path)),
        || {
            let items = points(&path);
            let mut names: Vec<String> = items
                .iter()
                .filter_map(|i| i.metric.as_ref().map(|m| m.name.clone()))
                .collect();
            names.sort();
            names.dedup();
            format!(
                "{} points; metrics: {names:?}\n--- log ---\n{}",
                items.len(),
                agent.log()
            )
        },
    )
}

const OUTPUT: &str = r#"
exporters:
  file:
    path: "@DIR@/out.jsonl"
extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
"#;

// ---------------------------------------------------------------------------------------------------------
// Tests

/// Scrapes a real node exporter and a test target; every type arrives with its values, the target
/// becomes the resource, a series that disappears gets a staleness marker.
#[test]
fn scrapes_a_node_exporter_and_a_test_target() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, node_port) = start_node_exporter(tmp.path());
    let app = Target::start(APP_PAGE);
    let agent = Agent::start(&format!(
        r#"
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: node
          scrape_interval: 1s
          static_configs:
            - targets: ["127.0.0.1:{node_port}"]
        - job_name: app
          scrape_interval: 1s
          scrape_timeout: 500ms
          static_configs:
            - targets: ["127.0.0.1:{app_port}"]
              labels: {{env: test}}
          metric_relabel_configs:
            - source_labels: [__name__]
              regex: app_ignored_.*
              action: drop
{OUTPUT}
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [file]
"#,
        app_port = app.port
    ));
    let app_instance = format!("127.0.0.1:{}", app.port);
    let node_instance = format!("127.0.0.1:{node_port}");

    // The test target: every type with its values.
    let requests = wait_points(
        &agent,
        "app_requests_total",
        Duration::from_secs(30),
        |items| {
            let r: Vec<Item> = named(items, "app_requests_total")
                .into_iter()
                .cloned()
                .collect();
            (r.len() >= 2).then_some(r)
        },
    );
    let ok = requests
        .iter()
        .find(|i| i.attr("code") == Some(&str_attr("200")))
        .expect("the code=200 series");
    let info = ok.metric.as_ref().unwrap();
    assert_eq!(info.kind, "sum");
    assert_eq!(info.is_monotonic, Some(true));
    assert_eq!(info.aggregation_temporality, Some(2), "cumulative");
    assert_eq!(number(ok), Some(1027.0));
    assert_eq!(ok.attr("path"), Some(&str_attr("/a,b")));
    assert!(ok.int_field("startTimeUnixNano").unwrap() > 0);
    assert_eq!(ok.resource.get("service.name"), Some(&str_attr("app")));
    assert_eq!(
        ok.resource.get("service.instance.id"),
        Some(&str_attr(&app_instance))
    );
    assert_eq!(ok.resource.get("env"), Some(&str_attr("test")));
    assert_eq!(
        ok.resource.get("server.port"),
        Some(&Attr::Int(app.port as i64))
    );
    assert!(ok.attr("job").is_none() && ok.attr("instance").is_none() && ok.attr("env").is_none());

    let items = points(&agent.dir().join("out.jsonl"));
    let temp = named(&items, "app_temperature_celsius")[0];
    assert_eq!(temp.metric.as_ref().unwrap().kind, "gauge");
    assert_eq!(number(temp), Some(21.5));
    assert_eq!(temp.attr("room"), Some(&str_attr("lab")));
    let hist = named(&items, "app_latency_seconds")[0];
    assert_eq!(hist.metric.as_ref().unwrap().kind, "histogram");
    assert_eq!(hist.value["explicitBounds"], serde_json::json!([0.1, 1.0]));
    assert_eq!(
        hist.value["bucketCounts"],
        serde_json::json!(["2", "3", "1"])
    );
    assert_eq!(hist.int_field("count"), Some(6));
    assert_eq!(hist.value["sum"], serde_json::json!(3.5));
    let summary = named(&items, "app_rpc_seconds")[0];
    assert_eq!(summary.metric.as_ref().unwrap().kind, "summary");
    assert_eq!(summary.int_field("count"), Some(40));
    assert_eq!(
        summary.value["quantileValues"],
        serde_json::json!([{"quantile": 0.5, "value": 0.25}, {"quantile": 0.99, "value": 0.75}])
    );
    for part in [
        "app_latency_seconds_bucket",
        "app_latency_seconds_sum",
        "app_rpc_seconds_count",
    ] {
        assert!(named(&items, part).is_empty(), "{part} leaked as a metric");
    }

    // Synthetic series per target.
    let up_of = |items: &[Item], instance: &str| -> Vec<f64> {
        named(items, "up")
            .into_iter()
            .filter(|i| i.resource.get("service.instance.id") == Some(&str_attr(instance)))
            .filter_map(number)
            .collect()
    };
    assert!(up_of(&items, &app_instance).contains(&1.0));
    assert!(!named(&items, "scrape_duration_seconds").is_empty());
    let scraped: Vec<f64> = named(&items, "scrape_samples_scraped")
        .into_iter()
        .filter(|i| i.resource.get("service.name") == Some(&str_attr("app")))
        .filter_map(number)
        .collect();
    assert!(scraped.contains(&12.0), "{scraped:?}");

    // The node exporter: values checked against /proc, labels against uname.
    let mem_total = wait_points(
        &agent,
        "node_memory_MemTotal_bytes",
        Duration::from_secs(30),
        |items| {
            named(items, "node_memory_MemTotal_bytes")
                .first()
                .map(|i| (*i).clone())
        },
    );
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_eq!(number(&mem_total), Some(kib * 1024.0));
    assert_eq!(
        mem_total.resource.get("service.name"),
        Some(&str_attr("node"))
    );
    assert_eq!(
        mem_total.resource.get("service.instance.id"),
        Some(&str_attr(&node_instance))
    );
    let items = points(&agent.dir().join("out.jsonl"));
    let uname = named(&items, "node_uname_info")[0];
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(uname.attr("release"), Some(&str_attr(release.trim())));
    let cpu = named(&items, "node_cpu_seconds_total");
    assert!(!cpu.is_empty());
    assert_eq!(cpu[0].metric.as_ref().unwrap().kind, "sum");
    assert!(cpu
        .iter()
        .any(|i| i.attr("mode") == Some(&str_attr("idle"))));
    // The exporter's own Go runtime summary.
    let gc = named(&items, "go_gc_duration_seconds");
    assert!(!gc.is_empty() && gc[0].metric.as_ref().unwrap().kind == "summary");
    assert!(up_of(&items, &node_instance).contains(&1.0));

    // A series that disappears is marked stale (NoRecordedValue), once.
    app.set_page(&APP_PAGE.replace("app_requests_total{code=\"500\",path=\"/\"} 3\n", ""));
    let stale = wait_points(
        &agent,
        "a staleness marker for code=500",
        Duration::from_secs(30),
        |items| {
            named(items, "app_requests_total")
                .into_iter()
                .find(|i| i.attr("code") == Some(&str_attr("500")) && flags(i) & 1 == 1)
                .cloned()
        },
    );
    assert!(stale.value.get("asDouble").is_none());
    assert!(agent.metric(r#"outpost_receiver_scrapes_total{job="app",result="ok"}"#) >= 2.0);
    assert!(
        agent.metric(
            r#"outpost_receiver_accepted_items_total{receiver="prometheus",transport="scrape"}"#
        ) > 0.0
    );
    assert_eq!(
        agent.metric(r#"outpost_receiver_scrape_targets{job="node"}"#),
        1.0
    );
    assert!(app.scrapes() >= 2);
    drop(node);
}

/// A real Prometheus in agent mode scrapes the test target and remote-writes into outpost; the samples
/// come out with their names, labels and values.
#[test]
fn a_prometheus_agent_remote_writes_into_outpost() {
    let tmp = tempfile::tempdir().unwrap();
    let app = Target::start(APP_PAGE);
    let rw_port = free_port();
    let agent = Agent::start(&format!(
        r#"
receivers:
  prometheusremotewrite:
    endpoint: 127.0.0.1:{rw_port}
{OUTPUT}
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [prometheusremotewrite]
      exporters: [file]
"#
    ));
    let prom_config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            r#"
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["127.0.0.1:{}"]
        labels: {{env: lab}}
remote_write:
  - url: http://127.0.0.1:{rw_port}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
    metadata_config:
      send_interval: 1s
"#,
            app.port
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let mut cmd = Command::new(PROMETHEUS);
    cmd.arg("--enable-feature=agent")
        .arg(format!("--config.file={}", prom_config.display()))
        .arg(format!(
            "--storage.agent.path={}",
            tmp.path().join("wal").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
    let prom = Proc::spawn(
        "prometheus agent",
        &mut cmd,
        &tmp.path().join("prometheus.log"),
    );

    let instance = format!("127.0.0.1:{}", app.port);
    // Metadata arrives in its own requests; once it has, the counter is a monotonic sum.
    let counter = wait_points(
        &agent,
        "app_requests_total as a monotonic sum",
        Duration::from_secs(60),
        |items| {
            named(items, "app_requests_total")
                .into_iter()
                .find(|i| {
                    i.attr("code") == Some(&str_attr("200"))
                        && i.metric.as_ref().unwrap().kind == "sum"
                })
                .cloned()
        },
    );
    assert_eq!(number(&counter), Some(1027.0));
    assert_eq!(counter.metric.as_ref().unwrap().is_monotonic, Some(true));
    assert_eq!(counter.attr("path"), Some(&str_attr("/a,b")));
    assert_eq!(counter.attr("env"), Some(&str_attr("lab")));
    assert_eq!(counter.resource.get("service.name"), Some(&str_attr("app")));
    assert_eq!(
        counter.resource.get("service.instance.id"),
        Some(&str_attr(&instance))
    );
    // The sample's own timestamp, from the scrape a moment ago.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let t = counter.int_field("timeUnixNano").unwrap();
    assert!(
        now_ns - t < 120_000_000_000 && t <= now_ns,
        "{t} vs {now_ns}"
    );

    let items = points(&agent.dir().join("out.jsonl"));
    let temp = named(&items, "app_temperature_celsius");
    assert!(temp
        .iter()
        .any(|i| number(i) == Some(21.5) && i.attr("room") == Some(&str_attr("lab"))));
    let bucket = named(&items, "app_latency_seconds_bucket");
    assert!(
        bucket
            .iter()
            .any(|i| i.attr("le") == Some(&str_attr("1")) && number(i) == Some(5.0)),
        "{bucket:?}"
    );
    let quantile = named(&items, "app_rpc_seconds");
    assert!(quantile
        .iter()
        .any(|i| i.attr("quantile") == Some(&str_attr("0.99")) && number(i) == Some(0.75)));
    // Prometheus's own per-target series come along.
    assert!(named(&items, "up").iter().any(|i| number(i) == Some(1.0)));
    assert!(
        agent.metric(r#"outpost_receiver_accepted_items_total{receiver="prometheusremotewrite"}"#)
            > 0.0
    );
    assert_eq!(
        agent
            .metric(r#"outpost_receiver_refused_requests_total{receiver="prometheusremotewrite"}"#),
        0.0,
        "{}",
        prom.log()
    );
}

/// A page that does not parse makes `up` 0 with the reason in the log; a remote-write body that does
/// not decode is a 400 with its reason, a wrong content type a 415; outpost keeps running throughout.
#[test]
fn malformed_pages_and_bodies_are_reported_not_fatal() {
    let app = Target::start(APP_PAGE);
    let rw_port = free_port();
    let mut agent = Agent::start(&format!(
        r#"
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: app
          scrape_interval: 1s
          static_configs:
            - targets: ["127.0.0.1:{}"]
  prometheusremotewrite:
    endpoint: 127.0.0.1:{rw_port}
# A processor that reads items: the scrapes, which the receiver admits encoded, reach it decoded.
processors:
  attributes/mark:
    actions:
      - key: pipeline.seen
        action: insert
        value: "yes"
{OUTPUT}
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [prometheus, prometheusremotewrite]
      processors: [attributes/mark]
      exporters: [file]
"#,
        app.port
    ));
    wait_points(&agent, "up = 1", Duration::from_secs(30), |items| {
        named(items, "up")
            .into_iter()
            .find(|i| number(i) == Some(1.0))
            .cloned()
    });
    app.set_page("app_requests_total{code=\"200\" 1027\n");
    wait_points(&agent, "up = 0", Duration::from_secs(30), |items| {
        named(items, "up")
            .into_iter()
            .find(|i| number(i) == Some(0.0))
            .cloned()
    });
    wait_for(
        Duration::from_secs(10),
        "the parse error in the log",
        || {
            let log = agent.log();
            (log.contains("scrape failed") && log.contains("line 1")).then_some(())
        },
        || agent.log(),
    );
    // The series of the healthy page were marked stale when the page broke.
    let items = points(&agent.dir().join("out.jsonl"));
    assert!(named(&items, "app_temperature_celsius")
        .iter()
        .any(|i| flags(i) & 1 == 1));
    // Every scraped point went through the processor.
    for name in ["up", "app_temperature_celsius", "app_requests_total"] {
        let scraped = named(&items, name);
        assert!(!scraped.is_empty(), "{name}");
        assert!(
            scraped
                .iter()
                .all(|i| i.attr("pipeline.seen") == Some(&str_attr("yes"))),
            "{name}: a point missed the attributes processor"
        );
    }

    let url = format!("http://127.0.0.1:{rw_port}/api/v1/write");
    let (status, body) = raw_post(&url, "application/x-protobuf", b"\x00garbage not snappy");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("snappy"), "{body}");
    let (status, _) = raw_post(&url, "application/json", b"{}");
    assert_eq!(status, 415);
    assert!(agent.is_running());
    assert_eq!(http_get(agent.admin_addr(), "/readyz").unwrap().status, 200);
    assert!(
        agent.metric(r#"outpost_receiver_refused_requests_total{receiver="prometheusremotewrite",reason="malformed"}"#)
            >= 1.0
    );
    // And scraping resumes when the page is fixed.
    app.set_page(APP_PAGE);
    let log_len = agent.log().len();
    wait_for(
        Duration::from_secs(30),
        "the target up again",
        || agent.log()[log_len..].contains("up again").then_some(()),
        || agent.log(),
    );
}

/// A blocking HTTP POST over a plain socket (snappy-encoded, as remote-write says): the status and body.
fn raw_post(url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Encoding: snappy\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
