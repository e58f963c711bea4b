//! Config reload against the real binary: a client sends without pause while the config file changes
//! five times (a processor changed, an exporter added, a receiver's port changed, an invalid config, a
//! revert); the ConfigMap-style symlink swap; SIGHUP and `POST /-/reload`; and the last known good config
//! after a restart with a broken file.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use outpost_integration::delivery::Arrivals;
use outpost_integration::otlp_json::{self, Attr, JsonlTail, Signal};
use outpost_integration::{free_port, gen, http_get, http_post, wait_for, Agent};
use sha2::{Digest, Sha256};

const SPANS: u32 = 5;
const CLIENTS: u32 = 4;

struct Shape<'a> {
    gen: &'a str,
    side_port: u16,
    second_exporter: bool,
}

fn config(main_port: u16, shape: &Shape<'_>) -> String {
    let (second_def, second_use) = if shape.second_exporter {
        (
            "  file/second:\n    path: \"@DIR@/second.jsonl\"\n    flush_interval: 100ms\n",
            ", file/second",
        )
    } else {
        ("", "")
    };
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{main_port}
  otlp/side:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{side}
processors:
  attributes/gen:
    actions:
      - key: config.gen
        value: "{gen}"
        action: upsert
  batch:
    timeout: 50ms
exporters:
  file:
    path: "@DIR@/traces.jsonl"
    flush_interval: 100ms
{second_def}extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp, otlp/side]
      processors: [attributes/gen, batch]
      exporters: [file{second_use}]
"#,
        side = shape.side_port,
        gen = shape.gen,
    )
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn reloads(agent: &Agent, result: &str) -> f64 {
    agent.metric(&format!(
        r#"outpost_config_reloads_total{{result="{result}"}}"#
    ))
}

/// Waits until the reload counter for `result` passes `before`.
fn await_reload(agent: &Agent, result: &str, before: f64, what: &str) {
    wait_for(
        Duration::from_secs(20),
        what,
        || (reloads(agent, result) > before).then_some(()),
        || format!("{}\n--- log ---\n{}", agent.metrics_text(), agent.log()),
    );
}

/// Waits until the clients have had at least `target` requests acknowledged in all, and returns the
/// count. Each reload step waits for fresh acknowledgements, so "the clients kept being served" is
/// checked phase by phase rather than by a total that depends on how fast the machine is.
async fn await_acks(acked: &Mutex<BTreeSet<u32>>, target: usize, what: &str) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n = acked.lock().unwrap().len();
        if n >= target {
            return n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {n} requests acknowledged in all, waited 20 s for {target}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `config.gen` values seen in a file sink's output so far.
fn gens(tail: &mut JsonlTail, seen: &mut BTreeSet<String>) {
    for item in otlp_json::items(Signal::Traces, &tail.read_new()) {
        if let Some(Attr::Str(g)) = item.attr("config.gen") {
            seen.insert(g.clone());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_config_changes_under_load_lose_nothing_and_never_refuse() {
    let main_port = free_port();
    let side_port = free_port();
    let moved_port = free_port();
    let v0 = config(
        main_port,
        &Shape {
            gen: "0",
            side_port,
            second_exporter: false,
        },
    );
    let mut agent = Agent::spawn(&v0, None, &[]);
    agent.wait_ready();
    let first_hash = sha256_hex(&agent.config());
    assert_eq!(
        agent.metric(&format!(
            r#"outpost_config_info{{hash="{first_hash}",source="file"}}"#
        )),
        1.0,
        "config_info names the SHA-256 of the file\n{}",
        agent.metrics_text()
    );

    // The clients: numbered requests to the receiver that never changes, each client sending its next
    // request as soon as the last is answered.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (acked, refused, stop, sent) =
            (acked.clone(), refused.clone(), stop.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            let mut client = TraceServiceClient::new(gen::grpc_channel(main_port).await);
            let mut seed = c * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                match client
                    .export(gen::traces(SPANS as usize, "reload", seed))
                    .await
                {
                    Ok(_) => {
                        acked.lock().unwrap().insert(seed);
                    }
                    Err(status) => refused.lock().unwrap().push((seed, status.to_string())),
                }
                sent.fetch_add(1, Ordering::Relaxed);
                seed += 1;
            }
        }));
    }
    let mut tail = JsonlTail::new(&agent.dir().join("traces.jsonl"));
    let mut seen = BTreeSet::new();
    let settle = || async { tokio::time::sleep(Duration::from_millis(700)).await };
    settle().await;
    // Every step below must be followed by fresh acknowledgements from the unchanged receiver.
    let fresh = 2 * CLIENTS as usize;
    let mut acks = await_acks(&acked, fresh, "before the first change").await;

    // 1. A processor changes: spans admitted afterwards carry the new value.
    let before = reloads(&agent, "applied");
    let v1 = config(
        main_port,
        &Shape {
            gen: "1",
            side_port,
            second_exporter: false,
        },
    );
    agent.write_config(&v1);
    await_reload(
        &agent,
        "applied",
        before,
        "the processor change to be applied",
    );
    wait_for(
        Duration::from_secs(10),
        "spans processed by the changed processor (config.gen = 1)",
        || {
            gens(&mut tail, &mut seen);
            seen.contains("1").then_some(())
        },
        || agent.log(),
    );
    assert!(seen.contains("0"), "spans from before the change: {seen:?}");
    acks = await_acks(&acked, acks + fresh, "after the processor change").await;

    // 2. An exporter is added: it starts receiving.
    let before = reloads(&agent, "applied");
    let v2 = config(
        main_port,
        &Shape {
            gen: "1",
            side_port,
            second_exporter: true,
        },
    );
    agent.write_config(&v2);
    await_reload(
        &agent,
        "applied",
        before,
        "the added exporter to be applied",
    );
    let mut second = Arrivals::new(&agent.dir().join("second.jsonl"));
    wait_for(
        Duration::from_secs(10),
        "the added exporter to write spans",
        || (second.poll() > 0 || second.total() > 0).then_some(()),
        || agent.log(),
    );
    acks = await_acks(&acked, acks + fresh, "after the exporter was added").await;

    // 3. The side receiver moves to another port; the main one keeps serving.
    let before = reloads(&agent, "applied");
    let v3 = config(
        main_port,
        &Shape {
            gen: "1",
            side_port: moved_port,
            second_exporter: true,
        },
    );
    agent.write_config(&v3);
    await_reload(&agent, "applied", before, "the receiver's port change");
    let mut side = TraceServiceClient::new(gen::grpc_channel(moved_port).await);
    side.export(gen::traces(1, "reload-side", 1_000_000))
        .await
        .expect("the moved receiver answers on its new port");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", side_port)).is_err(),
        "the old port is released"
    );
    settle().await;
    acks = await_acks(&acked, acks + fresh, "after the receiver moved").await;

    // 4. An invalid config: refused, the running one stays, the node says it is degraded.
    let hash_before_invalid = sha256_hex(&agent.fill(&v3));
    let before = reloads(&agent, "invalid");
    let invalid = v3.replace(
        "processors: [attributes/gen, batch]",
        "processors: [attributes/gen, batch, nonexistent]",
    );
    agent.write_config(&invalid);
    await_reload(
        &agent,
        "invalid",
        before,
        "the invalid config to be refused",
    );
    assert_eq!(agent.metric("outpost_config_reload_success"), 0.0);
    assert_eq!(
        agent.metric(&format!(
            r#"outpost_config_info{{hash="{hash_before_invalid}"}}"#
        )),
        1.0,
        "the applied config is still the previous one\n{}",
        agent.metrics_text()
    );
    let ready = http_get(agent.admin_addr(), "/readyz").unwrap();
    assert_eq!(ready.status, 200, "a degraded node still takes data");
    assert!(
        ready.body.contains("degraded") && ready.body.contains("nonexistent"),
        "readyz gives the reason: {}",
        ready.body
    );
    assert!(
        agent.log().contains("nonexistent"),
        "the errors are logged:\n{}",
        agent.log()
    );
    settle().await;
    acks = await_acks(&acked, acks + fresh, "after the invalid config").await;

    // 5. Revert to the first config.
    let before = reloads(&agent, "applied");
    agent.write_config(&v0);
    await_reload(&agent, "applied", before, "the revert");
    assert_eq!(agent.metric("outpost_config_reload_success"), 1.0);
    assert_eq!(
        agent.metric(&format!(r#"outpost_config_info{{hash="{first_hash}"}}"#)),
        1.0
    );
    assert_eq!(
        http_get(agent.admin_addr(), "/readyz").unwrap().body.trim(),
        "ready"
    );
    wait_for(
        Duration::from_secs(10),
        "spans with config.gen = 0 again after the revert",
        || {
            let mut fresh = BTreeSet::new();
            gens(&mut tail, &mut fresh);
            fresh.contains("0").then_some(())
        },
        || agent.log(),
    );

    await_acks(&acked, acks + fresh, "after the revert").await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    agent.sigterm();
    let status = agent.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "clean stop: {status}\n{}", agent.log());

    let refused = refused.lock().unwrap().clone();
    assert!(
        refused.is_empty(),
        "the unchanged receiver refused {} of {} requests during the reloads: {:?}",
        refused.len(),
        sent.load(Ordering::Relaxed),
        &refused[..refused.len().min(5)]
    );
    let acked = acked.lock().unwrap().clone();
    let mut arrivals = Arrivals::new(&agent.dir().join("traces.jsonl"));
    arrivals.poll();
    let report = arrivals.report(&acked, SPANS);
    assert!(
        report.lost.is_empty(),
        "acknowledged spans lost across the reloads: {report}"
    );
    eprintln!(
        "reload under load: {} requests acknowledged, 0 refused; {report}",
        acked.len()
    );
}

#[test]
fn a_configmap_symlink_swap_is_reloaded() {
    let port = free_port();
    let v0 = config(
        port,
        &Shape {
            gen: "0",
            side_port: free_port(),
            second_exporter: false,
        },
    );
    let mut agent = Agent::spawn(&v0, None, &[]);
    agent.wait_ready();
    // Lay the file out as the kubelet does: config.yaml -> ..data/config.yaml, ..data -> ..<timestamp>.
    let mount = agent.dir().join("mount");
    let first = mount.join("..2026_11_21_10_00_00.000000001");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::write(first.join("outpost.yaml"), agent.config()).unwrap();
    std::os::unix::fs::symlink("..2026_11_21_10_00_00.000000001", mount.join("..data")).unwrap();
    let link = agent.dir().join("outpost.yaml.link");
    std::os::unix::fs::symlink(mount.join("..data/outpost.yaml"), &link).unwrap();
    std::fs::rename(&link, agent.config_path()).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        reloads(&agent, "applied"),
        0.0,
        "the same content behind a symlink is not a change\n{}",
        agent.log()
    );

    // The swap: a new timestamped dir, a new ..data link renamed over the old one.
    let v1 = agent.fill(&config(
        port,
        &Shape {
            gen: "1",
            side_port: free_port(),
            second_exporter: false,
        },
    ));
    let second = mount.join("..2026_11_21_10_05_00.000000002");
    std::fs::create_dir_all(&second).unwrap();
    std::fs::write(second.join("outpost.yaml"), &v1).unwrap();
    std::os::unix::fs::symlink("..2026_11_21_10_05_00.000000002", mount.join("..data_tmp"))
        .unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(&first).unwrap();

    await_reload(
        &agent,
        "applied",
        0.0,
        "the swapped ConfigMap to be applied",
    );
    let hash = sha256_hex(&v1);
    assert_eq!(
        agent.metric(&format!(r#"outpost_config_info{{hash="{hash}"}}"#)),
        1.0,
        "the applied config is the swapped-in one\n{}",
        agent.metrics_text()
    );
}

#[test]
fn sighup_http_reload_and_the_last_known_good_config() {
    let port = free_port();
    let data = tempfile::Builder::new()
        .prefix("outpost-it-lkg-")
        .tempdir()
        .unwrap();
    let shape = |gen| Shape {
        gen,
        side_port: 0,
        second_exporter: false,
    };
    let v0 = config(port, &shape("0")).replace(
        "  otlp/side:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n",
        "",
    );
    let v0 = v0.replace("receivers: [otlp, otlp/side]", "receivers: [otlp]");
    let v1 = v0.replace(r#"value: "0""#, r#"value: "1""#);
    let broken = v1.replace("exporters: [file]", "exporters: [file, missing]");

    // File watching off: only SIGHUP and POST /-/reload reload.
    let mut agent = Agent::spawn(&v0, Some(data.path()), &["--watch-interval", "0s"]);
    agent.wait_ready();
    agent.write_config(&broken);
    let answer = http_post(agent.admin_addr(), "/-/reload").unwrap();
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer.body.contains("missing") && answer.body.contains("line"),
        "the answer names the problem and its line: {}",
        answer.body
    );
    assert_eq!(agent.metric("outpost_config_reload_success"), 0.0);
    assert!(http_get(agent.admin_addr(), "/readyz")
        .unwrap()
        .body
        .contains("degraded"));

    agent.write_config(&v1);
    agent.sighup();
    wait_for(
        Duration::from_secs(20),
        "SIGHUP to apply the fixed config",
        || {
            (agent.metric(r#"outpost_config_reloads_total{trigger="sighup",result="applied"}"#)
                == 1.0)
                .then_some(())
        },
        || agent.log(),
    );
    let good = agent.config();
    let agent_admin = agent.admin_addr();
    assert_eq!(
        http_get(agent.admin_addr(), "/readyz").unwrap().body.trim(),
        "ready"
    );
    agent.sigterm();
    assert!(agent.wait_exit(Duration::from_secs(20)).success());
    drop(agent);

    // A restart with a broken file runs the last known good config and says so. That config is the
    // first agent's, admin port included, so this agent is asked there.
    let admin = agent_admin;
    let mut agent = Agent::spawn(&broken, Some(data.path()), &[]);
    let ready = wait_for(
        Duration::from_secs(30),
        "the restarted agent to be ready on the last known good config's admin port",
        || http_get(admin, "/readyz").ok().filter(|r| r.status == 200),
        || agent.log(),
    );
    assert!(ready.body.contains("last known good"), "{}", ready.body);
    let good_hash = sha256_hex(&good);
    let metrics = http_get(admin, "/metrics").unwrap().body;
    assert_eq!(
        outpost_integration::sum_metric(
            &metrics,
            &format!(r#"outpost_config_info{{hash="{good_hash}",source="last_known_good"}}"#)
        ),
        1.0,
        "{metrics}\n{}",
        agent.log()
    );
    assert!(agent.log().contains("last known good"), "{}", agent.log());
    agent.sigterm();
    assert!(agent.wait_exit(Duration::from_secs(20)).success());
    drop(agent);

    // Unless told to refuse.
    let mut agent = Agent::spawn(
        &broken,
        Some(data.path()),
        &["--on-invalid-config", "refuse"],
    );
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "refuses to start: {status}");
    assert!(agent.log().contains("missing"), "{}", agent.log());
}
