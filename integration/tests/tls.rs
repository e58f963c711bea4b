//! TLS, mTLS, authentication, certificate rotation and secret redaction, end to end: the real
//! OpenTelemetry Python SDK (and Python's `ssl` as a probe) against the built outpost binary.
//!
//! Every certificate is generated here with rcgen, into the test's temp dir: a CA, a server certificate
//! for 127.0.0.1, a client certificate, and an unrelated CA with its own client certificate (the
//! "untrusted" client). Nothing is committed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outpost_integration::otlp_json::{self, Signal};
use outpost_integration::pki::{write, Ca};
use outpost_integration::{free_port, python::python, run_with_timeout, wait_for, Agent};

// ---------------------------------------------------------------------------------------------------------
// Certificates

/// A leaf certificate for `name` with `serial`, valid until the end of `year`. Returns (certificate PEM,
/// key PEM, SHA-256 of the DER).
fn leaf(ca: &Ca, name: &str, serial: u64, year: i32) -> (String, String, String) {
    let leaf = ca.leaf_until(name, serial, year);
    let sha = sha256_hex(&leaf.der);
    (leaf.cert_pem, leaf.key_pem, sha)
}

fn sha256_hex(der: &[u8]) -> String {
    // The probe reports Python's hashlib SHA-256 of the same DER; compare hex strings.
    let out = Command::new(python())
        .arg("-c")
        .arg("import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(der)?;
            child.wait_with_output()
        })
        .expect("hashing with python");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Every file a test needs, written to `dir`.
struct Pki {
    dir: PathBuf,
    server_sha: String,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca = Ca::new("outpost test CA");
        let (cert, key, server_sha) = leaf(&ca, "localhost", 1, 2040);
        write(dir, "server.pem", &cert);
        write(dir, "server.key", &key);
        write(dir, "ca.pem", &ca.pem());
        let (cert, key, _) = leaf(&ca, "client-a", 2, 2040);
        write(dir, "client.pem", &cert);
        write(dir, "client.key", &key);
        let rogue = Ca::new("some other CA");
        let (cert, key, _) = leaf(&rogue, "client-a", 3, 2040);
        write(dir, "rogue.pem", &cert);
        write(dir, "rogue.key", &key);
        // A second server certificate from the same CA, for rotation: other key, serial and expiry.
        let (cert, key, next_sha) = leaf(&ca, "localhost", 4, 2045);
        write(dir, "server-next.pem", &cert);
        write(dir, "server-next.key", &key);
        write(dir, "server-next.sha256", &next_sha);
        Pki {
            dir: dir.to_path_buf(),
            server_sha,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Python clients

#[derive(Debug)]
struct Sent {
    ok: u64,
    failed: u64,
}

fn client(args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/tls_client.py");
    let mut cmd = Command::new(python());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(key);
        }
    }
    // requests lets these override the CA file the SDK's exporter sets on its session: a machine that
    // sets them (many CI images do) would verify outpost against the system roots instead.
    for var in ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
        cmd.env_remove(var);
    }
    let out = run_with_timeout(
        cmd.arg(&script)
            .args(args)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost"),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "tls_client.py {args:?} failed ({}):\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    // What the SDK logged (export errors), shown when an assertion fails.
    eprintln!("tls_client.py {args:?}:\n{}", out.stderr);
    let last = out.stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "tls_client.py {args:?}: not JSON ({e}):\n{}\n{}",
            out.stdout, out.stderr
        )
    })
}

fn sdk(mode: &str, transport: &str, port: u16, pki: &Pki, extra: &[&str]) -> Sent {
    let endpoint = format!("127.0.0.1:{port}");
    let ca = pki.path("ca.pem");
    let mut args = vec![
        mode,
        "--transport",
        transport,
        "--endpoint",
        &endpoint,
        "--ca",
        &ca,
    ];
    args.extend_from_slice(extra);
    let v = client(&args);
    Sent {
        ok: v["ok"].as_u64().unwrap(),
        failed: v["failed"].as_u64().unwrap(),
    }
}

fn probe(port: u16, pki: &Pki, extra: &[&str]) -> serde_json::Value {
    let endpoint = format!("127.0.0.1:{port}");
    let ca = pki.path("ca.pem");
    let mut args = vec!["probe", "--endpoint", &endpoint, "--ca", &ca];
    args.extend_from_slice(extra);
    client(&args)
}

fn spans_at(agent: &Agent) -> usize {
    otlp_json::count_items(&agent.dir().join("traces.jsonl"), Signal::Traces)
}

fn wait_spans(agent: &Agent, n: usize) {
    wait_for(
        Duration::from_secs(30),
        &format!("{n} spans in traces.jsonl"),
        || (spans_at(agent) >= n).then_some(()),
        || format!("{} spans", spans_at(agent)),
    );
    // Nothing beyond what was sent: no duplicate.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(spans_at(agent), n);
}

fn file_sink_pipeline() -> &'static str {
    r#"
exporters:
  file:
    path: "@DIR@/traces.jsonl"
    flush_interval: 100ms
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
"#
}

// ---------------------------------------------------------------------------------------------------------
// Tests

/// The SDK over TLS (gRPC) and over mTLS (HTTP); clients without a certificate or with one from another
/// CA are refused at the handshake and counted.
#[test]
fn sdk_over_tls_and_mtls_and_refused_clients_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (grpc, http) = (free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        tls:
          cert_file: {cert}
          key_file: {key}
      http:
        endpoint: 127.0.0.1:{http}
        tls:
          cert_file: {cert}
          key_file: {key}
          client_ca_file: {ca}
{rest}"#,
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        ca = pki.path("ca.pem"),
        rest = file_sink_pipeline(),
    );
    let agent = Agent::start(&config);

    let sent = sdk("sdk", "grpc", grpc, &pki, &["--count", "40"]);
    assert_eq!((sent.ok, sent.failed), (40, 0), "gRPC over TLS");
    let client = [
        "--cert",
        &pki.path("client.pem"),
        "--key",
        &pki.path("client.key"),
    ];
    let mut args = vec!["--count", "60"];
    args.extend_from_slice(&client);
    let sent = sdk("sdk", "http", http, &pki, &args);
    assert_eq!((sent.ok, sent.failed), (60, 0), "HTTP over mTLS");
    wait_spans(&agent, 100);

    // The server presented the configured certificate.
    let ok = probe(http, &pki, &client);
    assert_eq!(ok["sha256"], pki.server_sha.as_str(), "{ok}");
    assert_eq!(ok["status"], 200, "{ok}");

    // No client certificate, and one signed by another CA: refused, nothing accepted, counted.
    let none = probe(http, &pki, &[]);
    assert!(none["status"].is_null(), "{none}");
    let rogue = probe(
        http,
        &pki,
        &[
            "--cert",
            &pki.path("rogue.pem"),
            "--key",
            &pki.path("rogue.key"),
        ],
    );
    assert!(rogue["status"].is_null(), "{rogue}");
    let failures = |reason: &str| {
        agent.metric(&format!(
            r#"outpost_receiver_auth_failures_total{{receiver="otlp",transport="http",reason="{reason}"}}"#
        ))
    };
    wait_for(
        Duration::from_secs(10),
        "both refusals counted",
        || {
            (failures("no_client_certificate") >= 1.0
                && failures("untrusted_client_certificate") >= 1.0)
                .then_some(())
        },
        || agent.metrics_text(),
    );
    // The SDK without its client certificate fails too, and nothing more arrived.
    let sent = sdk("sdk", "http", http, &pki, &["--count", "5"]);
    assert_eq!(sent.ok, 0, "{sent:?}");
    assert_eq!(spans_at(&agent), 100);
    // The expiry of the server certificate is published (valid until the end of 2040).
    let expiry = agent.metric(
        r#"outpost_tls_certificate_expiry_seconds{component="receivers.otlp.protocols.http"}"#,
    );
    assert!(expiry > 10.0 * 365.0 * 86400.0, "{expiry}");
}

/// Bearer tokens and htpasswd users on a TLS receiver: a wrong token is refused with 401 /
/// UNAUTHENTICATED and counted; the right ones get through.
#[test]
fn tokens_and_passwords_are_checked_and_failures_counted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    write(dir.path(), "tokens", "# one token per line\ngood-token-1\n");
    let (grpc, http) = (free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        tls: {{cert_file: {cert}, key_file: {key}}}
        auth: {{bearer_token_file: {tokens}}}
      http:
        endpoint: 127.0.0.1:{http}
        tls: {{cert_file: {cert}, key_file: {key}}}
        auth: {{bearer_token_file: {tokens}}}
{rest}"#,
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        tokens = pki.path("tokens"),
        rest = file_sink_pipeline(),
    );
    let agent = Agent::start(&config);
    let failures = |transport: &str, reason: &str| {
        agent.metric(&format!(
            r#"outpost_receiver_auth_failures_total{{transport="{transport}",reason="{reason}"}}"#
        ))
    };

    assert_eq!(probe(http, &pki, &["--token", "wrong"])["status"], 401);
    assert_eq!(probe(http, &pki, &[])["status"], 401);
    assert_eq!(
        probe(http, &pki, &["--token", "good-token-1"])["status"],
        200
    );
    assert_eq!(failures("http", "invalid_token"), 1.0);
    assert_eq!(failures("http", "missing_credentials"), 1.0);

    let bad = sdk(
        "sdk",
        "grpc",
        grpc,
        &pki,
        &["--count", "10", "--token", "wrong"],
    );
    assert_eq!((bad.ok, bad.failed), (0, 10), "a wrong token over gRPC");
    assert!(failures("grpc", "invalid_token") >= 1.0);
    let good = sdk(
        "sdk",
        "grpc",
        grpc,
        &pki,
        &["--count", "10", "--token", "good-token-1"],
    );
    assert_eq!((good.ok, good.failed), (10, 0));
    let good = sdk(
        "sdk",
        "http",
        http,
        &pki,
        &["--count", "10", "--token", "good-token-1"],
    );
    assert_eq!((good.ok, good.failed), (10, 0));
    wait_spans(&agent, 20);

    // The token file is re-read when it changes: the old token stops working, the new one works.
    std::thread::sleep(Duration::from_millis(1100));
    write(dir.path(), "tokens", "rotated-token-2\n");
    wait_for(
        Duration::from_secs(10),
        "the new token accepted",
        || (probe(http, &pki, &["--token", "rotated-token-2"])["status"] == 200).then_some(()),
        || agent.log(),
    );
    assert_eq!(
        probe(http, &pki, &["--token", "good-token-1"])["status"],
        401
    );
}

/// One outpost exports to another over mTLS, with a bearer token from a file on top; the sink admits
/// only the client certificate's name.
#[test]
fn outpost_exports_to_outpost_over_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    write(dir.path(), "tokens", "edge-node-token\n");
    write(dir.path(), "token", "edge-node-token\n");
    let sink_grpc = free_port();
    let sink = Agent::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{sink_grpc}
        tls:
          cert_file: {cert}
          key_file: {key}
          client_ca_file: {ca}
        auth:
          client_certificate:
            allowed_names: [client-a]
{rest}"#,
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        ca = pki.path("ca.pem"),
        rest = file_sink_pipeline(),
    ));
    let front_grpc = free_port();
    let front = Agent::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{front_grpc}
        tls: {{cert_file: {cert}, key_file: {key}}}
exporters:
  otlp:
    endpoint: https://127.0.0.1:{sink_grpc}
    tls:
      ca_file: {ca}
      cert_file: {client_cert}
      key_file: {client_key}
    auth:
      bearer_token_file: {token}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms}}
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
"#,
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        ca = pki.path("ca.pem"),
        client_cert = pki.path("client.pem"),
        client_key = pki.path("client.key"),
        token = pki.path("token"),
    ));
    let sent = sdk("sdk", "grpc", front_grpc, &pki, &["--count", "200"]);
    assert_eq!((sent.ok, sent.failed), (200, 0));
    wait_spans(&sink, 200);
    front.await_metric(
        r#"outpost_exporter_sent_items_total{exporter="otlp"}"#,
        200.0,
    );
    assert_eq!(sink.metric("outpost_receiver_auth_failures_total"), 0.0);
}

/// The server certificate is replaced while the SDK keeps sending: new connections get the new
/// certificate (by fingerprint), nothing sent is lost, and the expiry gauge follows.
#[test]
fn server_certificate_rotates_while_clients_send() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let http = free_port();
    let agent = Agent::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
        tls:
          cert_file: {cert}
          key_file: {key}
          reload_interval: 200ms
{rest}"#,
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        rest = file_sink_pipeline(),
    ));
    assert_eq!(probe(http, &pki, &[])["sha256"], pki.server_sha.as_str());
    let expiry = |a: &Agent| a.metric("outpost_tls_certificate_expiry_seconds");
    let before = expiry(&agent);

    // A client sends 10 spans every 100ms for 6 seconds, over the same keep-alive connection and new
    // ones, while the files are replaced under it.
    let pki_dir = dir.path().to_path_buf();
    let sender = std::thread::spawn(move || {
        let pki = Pki {
            dir: pki_dir,
            server_sha: String::new(),
        };
        sdk(
            "stream",
            "http",
            http,
            &pki,
            &["--count", "10", "--seconds", "6", "--interval", "0.1"],
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    // As rotation tools do: write beside, rename over. Key first: for a moment the new key sits next
    // to the old certificate, which must not be used (the old pair stays in use).
    for (from, to) in [
        ("server-next.key", "server.key"),
        ("server-next.pem", "server.pem"),
    ] {
        fs::copy(dir.path().join(from), dir.path().join(format!("{to}.tmp"))).unwrap();
        fs::rename(dir.path().join(format!("{to}.tmp")), dir.path().join(to)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let next_sha = fs::read_to_string(dir.path().join("server-next.sha256")).unwrap();
    wait_for(
        Duration::from_secs(10),
        "a new connection sees the new certificate",
        || (probe(http, &pki, &[])["sha256"] == next_sha.as_str()).then_some(()),
        || agent.log(),
    );
    let sent = sender.join().unwrap();
    assert_eq!(sent.failed, 0, "{sent:?}");
    assert!(sent.ok >= 500, "{sent:?}");
    wait_spans(&agent, sent.ok as usize);
    // Valid five years longer than the old one.
    let after = expiry(&agent);
    assert!(after - before > 4.0 * 365.0 * 86400.0, "{before} → {after}");
    assert!(agent.metric(r#"outpost_tls_reloads_total{result="ok"}"#) >= 1.0);
}

/// Secrets in a config (an exporter header from `${file:…}`, token and htpasswd files) appear in none
/// of: `outpost validate` output, the agent's log (at debug level, with failing exports), /metrics.
#[test]
fn secrets_never_appear_in_logs_metrics_or_validate_output() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let header_secret = "hdr-SECRET-7f3a9c";
    let token_secret = "tok-SECRET-51be02";
    let receiver_token = "rcv-SECRET-c0ffee";
    write(dir.path(), "header", &format!("{header_secret}\n"));
    write(dir.path(), "token", &format!("{token_secret}\n"));
    write(dir.path(), "tokens", &format!("{receiver_token}\n"));
    write(
        dir.path(),
        "sink-tokens",
        "a-token-the-front-does-not-have\n",
    );
    // A destination that refuses every export with 401, so the exporter logs failures.
    let sink_grpc = free_port();
    let sink = Agent::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{sink_grpc}
        tls: {{cert_file: {cert}, key_file: {key}}}
        auth: {{bearer_token_file: {other}}}
{rest}"#,
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        other = pki.path("sink-tokens"),
        rest = file_sink_pipeline(),
    ));
    let front_grpc = free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{front_grpc}
        tls: {{cert_file: {cert}, key_file: {key}}}
        auth: {{bearer_token_file: {tokens}}}
exporters:
  otlp:
    endpoint: https://127.0.0.1:{sink_grpc}
    headers:
      x-api-key: "${{file:{header}}}"
    tls: {{ca_file: {ca}}}
    auth: {{bearer_token_file: {token}}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 200ms}}
extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
service:
  extensions: [health_check]
  telemetry:
    logs: {{level: debug}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
"#,
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        ca = pki.path("ca.pem"),
        tokens = pki.path("tokens"),
        token = pki.path("token"),
        header = pki.path("header"),
    );
    let front = Agent::start(&config);
    let sent = sdk(
        "sdk",
        "grpc",
        front_grpc,
        &pki,
        &["--count", "5", "--token", receiver_token],
    );
    assert_eq!(sent.ok, 5);
    let bad = sdk(
        "sdk",
        "grpc",
        front_grpc,
        &pki,
        &["--count", "5", "--token", "guess"],
    );
    assert_eq!(bad.ok, 0);
    wait_for(
        Duration::from_secs(20),
        "failed exports at the front",
        || (front.metric("outpost_exporter_send_failed_items_total") >= 5.0).then_some(()),
        || front.metrics_text(),
    );
    assert!(sink.metric(r#"outpost_receiver_auth_failures_total{reason="invalid_token"}"#) >= 1.0);

    // `outpost validate` on the same config, and on a broken variant of it.
    let config_path = front.dir().join("outpost.yaml");
    let broken_path = dir.path().join("broken.yaml");
    fs::write(
        &broken_path,
        front
            .config()
            .replace("tls: {ca_file:", "tls: {insecure: true, ca_file:"),
    )
    .unwrap();
    let mut outputs = Vec::new();
    for path in [&config_path, &broken_path] {
        let out = run_with_timeout(
            outpost_integration::outpost_command()
                .arg("validate")
                .arg("--config")
                .arg(path),
            Duration::from_secs(30),
        );
        outputs.push(format!("{}\n{}", out.stdout, out.stderr));
    }
    assert!(outputs[1].contains("insecure"), "{}", outputs[1]);

    for (what, text) in [
        ("front log", front.log()),
        ("sink log", sink.log()),
        ("front /metrics", front.metrics_text()),
        ("sink /metrics", sink.metrics_text()),
        ("validate", outputs[0].clone()),
        ("validate (broken)", outputs[1].clone()),
    ] {
        assert!(!text.is_empty(), "{what} is empty");
        for secret in [header_secret, token_secret, receiver_token] {
            assert!(
                !text.contains(secret),
                "{what} contains the secret {secret}:\n{text}"
            );
        }
    }
}

/// Syslog over TLS with client certificates: a client with the CA's certificate is read, one without a
/// certificate is refused at the handshake and counted.
#[test]
fn syslog_over_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let port = free_port();
    let agent = Agent::start(&format!(
        r#"
receivers:
  syslog:
    protocol: rfc5424
    tcp:
      listen_address: 127.0.0.1:{port}
      tls:
        cert_file: {cert}
        key_file: {key}
        client_ca_file: {ca}
exporters:
  file:
    path: "@DIR@/logs.jsonl"
    flush_interval: 100ms
extensions:
  health_check:
    endpoint: "@ADMIN@"
queue:
  directory: "@DATA_DIR@"
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [syslog]
      exporters: [file]
"#,
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        ca = pki.path("ca.pem"),
    ));
    let endpoint = format!("127.0.0.1:{port}");
    let ca = pki.path("ca.pem");
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let sent = client(&[
        "syslog",
        "--endpoint",
        &endpoint,
        "--ca",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--count",
        "25",
    ]);
    assert_eq!(sent["sent"], 25, "{sent}");
    let path = agent.dir().join("logs.jsonl");
    wait_for(
        Duration::from_secs(20),
        "25 log records",
        || (otlp_json::count_items(&path, Signal::Logs) >= 25).then_some(()),
        || agent.metrics_text(),
    );
    let _ = client(&[
        "syslog",
        "--endpoint",
        &endpoint,
        "--ca",
        &ca,
        "--count",
        "5",
    ]);
    wait_for(
        Duration::from_secs(10),
        "the refused handshake counted",
        || {
            (agent.metric(
                r#"outpost_receiver_auth_failures_total{receiver="syslog",reason="no_client_certificate"}"#,
            ) >= 1.0)
                .then_some(())
        },
        || agent.metrics_text(),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(otlp_json::count_items(&path, Signal::Logs), 25);
}
