//! TLS and authentication beyond the OTLP receivers, end to end against the built binary: per-client
//! rate limits (gRPC RESOURCE_EXHAUSTED, HTTP 429 with Retry-After) that leave other clients alone; the
//! remote-write receiver over TLS with bearer tokens, htpasswd users (bcrypt and `{SHA}`) and limits;
//! the `otlphttp` and `prometheusremotewrite` exporters over mTLS to a second outpost; scraping an https
//! target with a client certificate (and `up` = 0 with the reason when the CA is wrong); an exporter's
//! bearer token file rewritten while it sends; syslog over mTLS with a certificate-name check and a
//! per-client rate limit that slows the sender instead of dropping.
//!
//! Every certificate is made here with rcgen in the test's temp dir; every server is on 127.0.0.1 on a
//! free port and is stopped when its test ends.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use outpost_integration::gen;
use outpost_integration::otlp_json::{self, Attr, Signal};
use outpost_integration::pki::{write, Ca};
use outpost_integration::{free_port, wait_for, Agent};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

// ---------------------------------------------------------------------------------------------------------
// Certificates

/// The files of one test: `ca.pem`; `server.pem`/`.key` (localhost, 127.0.0.1); client certificates
/// `edge-1` and `edge-2` from the same CA; `other-ca.pem`, a CA that signed nothing here.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca = Ca::new("outpost test CA");
        write(dir, "ca.pem", &ca.pem());
        for (name, file) in [
            ("localhost", "server"),
            ("edge-1", "edge-1"),
            ("edge-2", "edge-2"),
        ] {
            let leaf = ca.leaf(name);
            write(dir, &format!("{file}.pem"), &leaf.cert_pem);
            write(dir, &format!("{file}.key"), &leaf.key_pem);
        }
        write(dir, "other-ca.pem", &Ca::new("another CA").pem());
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A rustls client trusting `ca.pem`, presenting `client` (`edge-1`, …) when given.
    fn client_tls(&self, client: Option<&str>) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(self.dir.join("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        match client {
            Some(name) => {
                let (certs, key) = self.pair(name);
                builder.with_client_auth_cert(certs, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        }
    }

    fn pair(&self, name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let certs = CertificateDer::pem_file_iter(self.dir.join(format!("{name}.pem")))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(self.dir.join(format!("{name}.key"))).unwrap();
        (certs, key)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn https(pki: &Pki, client: Option<&str>) -> reqwest::Client {
    outpost_integration::http_client_builder()
        .use_preconfigured_tls(pki.client_tls(client))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The admin endpoint, the queue and a file exporter per signal writing `@DIR@/<signal>.jsonl`.
fn sink_tail(pipelines: &str) -> String {
    format!(
        r#"
exporters:
  file/traces:
    path: "@DIR@/traces.jsonl"
    flush_interval: 100ms
  file/metrics:
    path: "@DIR@/metrics.jsonl"
    flush_interval: 100ms
  file/logs:
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
{pipelines}"#
    )
}

fn count(agent: &Agent, signal: Signal) -> usize {
    let file = match signal {
        Signal::Traces => "traces.jsonl",
        Signal::Metrics => "metrics.jsonl",
        Signal::Logs => "logs.jsonl",
    };
    otlp_json::count_items(&agent.dir().join(file), signal)
}

fn wait_count(agent: &Agent, signal: Signal, n: usize) {
    wait_for(
        Duration::from_secs(30),
        &format!("{n} items of {signal:?}"),
        || (count(agent, signal) >= n).then_some(()),
        || format!("{} so far\n{}", count(agent, signal), agent.log()),
    );
}

/// One OTLP/gRPC trace export of `spans` spans with `token` as bearer token.
async fn grpc_export(
    client: &mut TraceServiceClient<tonic::transport::Channel>,
    token: &str,
    spans: usize,
) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(gen::traces(spans, "rate-limited", 7));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    client.export(request).await.map(|_| ())
}

// ---------------------------------------------------------------------------------------------------------
// Per-client limits on the OTLP receivers

/// Two clients with their own tokens share one receiver limited to 2 requests/s per client: the one that
/// sends 6 requests at once gets RESOURCE_EXHAUSTED (gRPC) / 429 with Retry-After (HTTP) beyond its
/// budget, the other is not affected, and every refusal is counted.
#[test]
fn per_client_rate_limits_refuse_one_client_and_not_another() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    write(dir.path(), "tokens", "token-a\ntoken-b\n");
    let (grpc, http) = (free_port(), free_port());
    let agent = Agent::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        auth: {{bearer_token_file: {tokens}}}
        rate_limit: {{requests_per_second: 0.2, burst_seconds: 10}}
      http:
        endpoint: 127.0.0.1:{http}
        tls: {{cert_file: {cert}, key_file: {key}}}
        auth: {{bearer_token_file: {tokens}}}
        rate_limit: {{requests_per_second: 0.2, burst_seconds: 10}}
{rest}"#,
        tokens = pki.path("tokens"),
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        rest = sink_tail("    traces:\n      receivers: [otlp]\n      exporters: [file/traces]\n"),
    ));

    let (grpc_ok, exhausted, b_ok) = runtime().block_on(async {
        let channel = gen::grpc_channel(grpc).await;
        let mut client = TraceServiceClient::new(channel);
        let (mut ok, mut exhausted) = (0, 0);
        for _ in 0..6 {
            match grpc_export(&mut client, "token-a", 3).await {
                Ok(()) => ok += 1,
                Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                    assert!(s.message().contains("rate limit"), "{s:?}");
                    exhausted += 1
                }
                Err(s) => panic!("unexpected {s:?}"),
            }
        }
        let mut b_ok = 0;
        for _ in 0..2 {
            grpc_export(&mut client, "token-b", 3)
                .await
                .expect("the other client has its own budget");
            b_ok += 1;
        }
        (ok, exhausted, b_ok)
    });
    // A 2-request burst, refilling one request every 5 s: of six requests sent back to back, 2 pass
    // (3 if sending them took the machine over 5 s). A slow refill keeps the count independent of how
    // long each admitted request takes to be written.
    assert!((2..=3).contains(&grpc_ok), "{grpc_ok} passed");
    assert_eq!(grpc_ok + exhausted, 6);
    assert_eq!(b_ok, 2);
    let limited = |transport: &str| {
        agent.metric(&format!(
            r#"outpost_receiver_rate_limited_requests_total{{receiver="otlp",transport="{transport}",limit="requests"}}"#
        ))
    };
    assert_eq!(limited("grpc"), exhausted as f64);
    // Only what was admitted reached the pipeline.
    wait_count(&agent, Signal::Traces, (grpc_ok + b_ok) * 3);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&agent, Signal::Traces), (grpc_ok + b_ok) * 3);

    let statuses = runtime().block_on(async {
        let client = https(&pki, None);
        let url = format!("https://127.0.0.1:{http}/v1/traces");
        let post = |token: &'static str| {
            client
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .bearer_auth(token)
                .body(Vec::new())
                .send()
        };
        let mut a = Vec::new();
        for _ in 0..6 {
            let r = post("token-a").await.unwrap();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            a.push((r.status().as_u16(), retry_after));
        }
        let b = post("token-b").await.unwrap().status().as_u16();
        (a, b)
    });
    let (a, b) = statuses;
    let refused: Vec<_> = a.iter().filter(|(s, _)| *s == 429).collect();
    assert!(a.iter().all(|(s, _)| *s == 200 || *s == 429), "{a:?}");
    assert!((3..=4).contains(&refused.len()), "{a:?}");
    assert!(
        refused.iter().all(|(_, r)| r.is_some_and(|r| r >= 1)),
        "429 without Retry-After: {a:?}"
    );
    assert_eq!(b, 200, "the other client over HTTP");
    assert_eq!(limited("http"), refused.len() as f64);
}

// ---------------------------------------------------------------------------------------------------------
// The remote-write receiver

/// A snappy block holding an empty `WriteRequest`: a valid remote-write body with no series.
const EMPTY_WRITE_REQUEST: &[u8] = b"\x00";

/// `{SHA}` as `htpasswd -s` writes it.
fn sha_entry(password: &str) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(password.as_bytes());
    format!(
        "{{SHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The remote-write receiver over TLS with tokens, htpasswd users (bcrypt and `{SHA}`) and a per-client
/// limit: 401 with WWW-Authenticate without or with wrong credentials (counted by reason), 204 for each
/// valid user and token, 429 with Retry-After for the client over its budget and not for another.
#[test]
fn remote_write_receiver_over_tls_checks_tokens_users_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    write(dir.path(), "tokens", "rw-token-a\nrw-token-b\n");
    let bcrypt_hash = bcrypt::hash("alice's password", 4).unwrap();
    write(
        dir.path(),
        "htpasswd",
        &format!(
            "# users\nalice:{bcrypt_hash}\nbob:{}\n",
            sha_entry("bob's password")
        ),
    );
    let port = free_port();
    let agent = Agent::start(&format!(
        r#"
receivers:
  prometheusremotewrite:
    endpoint: 127.0.0.1:{port}
    tls: {{cert_file: {cert}, key_file: {key}}}
    auth:
      bearer_token_file: {tokens}
      htpasswd_file: {htpasswd}
    rate_limit: {{requests_per_second: 0.2, burst_seconds: 10}}
{rest}"#,
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        tokens = pki.path("tokens"),
        htpasswd = pki.path("htpasswd"),
        rest = sink_tail(
            "    metrics:\n      receivers: [prometheusremotewrite]\n      exporters: [file/metrics]\n"
        ),
    ));
    let url = format!("https://127.0.0.1:{port}/api/v1/write");
    let results = runtime().block_on(async {
        let client = https(&pki, None);
        let post = |auth: Option<(&str, Option<&str>)>| {
            let r = client
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .header("content-encoding", "snappy")
                .header("x-prometheus-remote-write-version", "0.1.0")
                .body(EMPTY_WRITE_REQUEST);
            let r = match auth {
                None => r,
                Some((token, None)) => r.bearer_auth(token),
                Some((user, Some(password))) => r.basic_auth(user, Some(password)),
            };
            async move {
                let resp = r.send().await.unwrap();
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_owned())
                };
                (
                    resp.status().as_u16(),
                    header("www-authenticate"),
                    header("retry-after"),
                )
            }
        };
        let mut out = Vec::new();
        out.push(post(None).await);
        out.push(post(Some(("alice", Some("alice's password")))).await);
        out.push(post(Some(("alice", Some("alice's password")))).await);
        out.push(post(Some(("bob", Some("bob's password")))).await);
        out.push(post(Some(("alice", Some("wrong")))).await);
        out.push(post(Some(("mallory", Some("x")))).await);
        out.push(post(Some(("not-a-token", None))).await);
        for _ in 0..5 {
            out.push(post(Some(("rw-token-a", None))).await);
        }
        out.push(post(Some(("rw-token-b", None))).await);
        out
    });
    let status: Vec<u16> = results.iter().map(|r| r.0).collect();
    // No credentials, then the two users (alice twice, within her own budget), then a wrong password,
    // an unknown user and an unknown token.
    assert_eq!(
        &status[..7],
        &[401, 204, 204, 204, 401, 401, 401],
        "{results:?}"
    );
    assert!(
        results[0]
            .1
            .as_deref()
            .is_some_and(|v| v.contains("Bearer")),
        "{results:?}"
    );
    // Token a: two pass, then the budget is spent (three more, sent back to back; the budget refills
    // one request every 5 s).
    let a = &results[7..12];
    let refused = a.iter().filter(|r| r.0 == 429).count();
    assert!((2..=3).contains(&refused), "{results:?}");
    assert!(
        a.iter().all(|r| r.0 == 204
            || (r.0 == 429
                && r.2
                    .as_deref()
                    .is_some_and(|v| v.parse::<u64>().unwrap() >= 1))),
        "{results:?}"
    );
    assert_eq!(
        results[12].0, 204,
        "token b has its own budget: {results:?}"
    );

    let failures = |reason: &str| {
        agent.metric(&format!(
            r#"outpost_receiver_auth_failures_total{{receiver="prometheusremotewrite",reason="{reason}"}}"#
        ))
    };
    assert_eq!(failures("missing_credentials"), 1.0);
    assert_eq!(failures("invalid_password"), 1.0);
    assert_eq!(failures("unknown_user"), 1.0);
    assert_eq!(failures("invalid_token"), 1.0);
    assert_eq!(
        agent.metric(
            r#"outpost_receiver_rate_limited_requests_total{receiver="prometheusremotewrite",limit="requests"}"#
        ),
        refused as f64
    );
    // Nothing about the refused requests counts as accepted data or a malformed body.
    assert_eq!(
        agent
            .metric(r#"outpost_receiver_refused_requests_total{receiver="prometheusremotewrite"}"#),
        0.0
    );
}

// ---------------------------------------------------------------------------------------------------------
// Exporters over mTLS

/// An edge outpost exports traces with `otlphttp` and metrics with `prometheusremotewrite` over mTLS to a
/// second outpost, whose receivers admit only certificates from their CA (and, for OTLP/HTTP, only the
/// name edge-1). Everything arrives; nothing is refused.
#[test]
fn otlphttp_and_remote_write_exporters_reach_a_second_outpost_over_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (sink_http, sink_rw) = (free_port(), free_port());
    let sink = Agent::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{sink_http}
        tls: {{cert_file: {cert}, key_file: {key}, client_ca_file: {ca}}}
        auth:
          client_certificate: {{allowed_names: [edge-1]}}
  prometheusremotewrite:
    endpoint: 127.0.0.1:{sink_rw}
    tls: {{cert_file: {cert}, key_file: {key}, client_ca_file: {ca}}}
{rest}"#,
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        ca = pki.path("ca.pem"),
        rest = sink_tail(
            "    traces:\n      receivers: [otlp]\n      exporters: [file/traces]\n    metrics:\n      \
             receivers: [prometheusremotewrite]\n      exporters: [file/metrics]\n"
        ),
    ));
    let front_grpc = free_port();
    let tls = format!(
        "{{ca_file: {}, cert_file: {}, key_file: {}}}",
        pki.path("ca.pem"),
        pki.path("edge-1.pem"),
        pki.path("edge-1.key")
    );
    let front = Agent::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{front_grpc}
exporters:
  otlphttp:
    endpoint: https://127.0.0.1:{sink_http}
    tls: {tls}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms}}
  prometheusremotewrite:
    endpoint: https://127.0.0.1:{sink_rw}/api/v1/write
    tls: {tls}
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
      exporters: [otlphttp]
    metrics:
      receivers: [otlp]
      exporters: [prometheusremotewrite]
"#
    ));
    runtime().block_on(async {
        let channel = gen::grpc_channel(front_grpc).await;
        let mut traces = TraceServiceClient::new(channel.clone());
        let mut metrics = opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient::new(channel);
        for i in 0..5 {
            traces
                .export(gen::traces(20, "edge-app", i))
                .await
                .unwrap();
        }
        metrics.export(gen::metrics(30, "edge-app")).await.unwrap();
    });
    wait_count(&sink, Signal::Traces, 100);
    wait_count(&sink, Signal::Metrics, 30);
    // The points arrived under their remote-write name with their values.
    let requests = otlp_json::read_requests(&sink.dir().join("metrics.jsonl"));
    let mut values: Vec<i64> = otlp_json::items(Signal::Metrics, &requests)
        .iter()
        .filter(|p| {
            p.metric
                .as_ref()
                .is_some_and(|m| m.name == "outpost_test_gauge")
        })
        .map(|p| p.value["asDouble"].as_f64().unwrap() as i64)
        .collect();
    values.sort();
    assert_eq!(values, (0..30).collect::<Vec<_>>());
    front.await_metric(
        r#"outpost_exporter_sent_items_total{exporter="otlphttp"}"#,
        100.0,
    );
    front.await_metric(
        r#"outpost_exporter_sent_items_total{exporter="prometheusremotewrite"}"#,
        30.0,
    );
    assert_eq!(sink.metric("outpost_receiver_auth_failures_total"), 0.0);
}

/// The exporter's bearer token file is rewritten while it sends: the destination first accepts both
/// tokens, then only the new one. Every span arrives, and the destination never saw a request with a
/// token it did not accept.
#[test]
fn exporter_token_file_rewritten_while_sending_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    write(dir.path(), "sink-tokens", "token-one\n");
    write(dir.path(), "token", "token-one\n");
    let sink_grpc = free_port();
    let sink = Agent::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{sink_grpc}
        tls: {{cert_file: {cert}, key_file: {key}, reload_interval: 200ms}}
        auth: {{bearer_token_file: {tokens}}}
{rest}"#,
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        tokens = pki.path("sink-tokens"),
        rest = sink_tail("    traces:\n      receivers: [otlp]\n      exporters: [file/traces]\n"),
    ));
    let front_grpc = free_port();
    let front = Agent::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{front_grpc}
exporters:
  otlp:
    endpoint: https://127.0.0.1:{sink_grpc}
    tls: {{ca_file: {ca}}}
    auth: {{bearer_token_file: {token}}}
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
        ca = pki.path("ca.pem"),
        token = pki.path("token"),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            runtime().block_on(async {
                let mut client = TraceServiceClient::new(gen::grpc_channel(front_grpc).await);
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    client.export(gen::traces(10, "edge-app", i)).await.unwrap();
                    sent.fetch_add(10, Ordering::SeqCst);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    // The destination learns the new token, then the sender gets it, then the old one is withdrawn.
    write(dir.path(), "sink-tokens", "token-one\ntoken-two\n");
    std::thread::sleep(Duration::from_millis(1200));
    write(dir.path(), "token", "token-two\n");
    std::thread::sleep(Duration::from_millis(2500));
    write(dir.path(), "sink-tokens", "token-two\n");
    let withdrawn = sent.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    let total = sent.load(Ordering::SeqCst);
    assert!(
        total > withdrawn,
        "nothing was sent after the old token was withdrawn"
    );
    wait_count(&sink, Signal::Traces, total);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        count(&sink, Signal::Traces),
        total,
        "nothing lost, nothing twice"
    );
    assert_eq!(
        sink.metric("outpost_receiver_auth_failures_total"),
        0.0,
        "{}",
        sink.metrics_text()
    );
    assert_eq!(
        front.metric("outpost_exporter_send_failed_items_total"),
        0.0
    );
}

// ---------------------------------------------------------------------------------------------------------
// Scraping over TLS

/// A small https server for `/metrics` that requires a client certificate from `ca.pem`; stops on drop.
struct TlsTarget {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsTarget {
    fn start(pki: &Pki, body: &'static str) -> TlsTarget {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(pki.dir.join("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let (certs, key) = pki.pair("server");
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => serve_one(stream, config.clone(), body),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        TlsTarget {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TlsTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request on one connection, answered and closed. A failed handshake just ends the connection.
fn serve_one(stream: TcpStream, config: Arc<rustls::ServerConfig>, body: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.write_all(response.as_bytes());
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// The prometheus receiver scrapes an https target with `tls_config` (CA and client certificate): `up` is
/// 1 and the target's sample arrives. A job whose `ca_file` is another CA gets `up` 0, and the log says
/// why (the certificate's issuer is unknown).
#[test]
fn scrape_targets_over_tls_are_up_and_a_wrong_ca_is_down_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let target = TlsTarget::start(&pki, "# TYPE tls_target_value gauge\ntls_target_value 42\n");
    let port = target.port;
    let agent = Agent::start(&format!(
        r#"
receivers:
  prometheus:
    config:
      global:
        scrape_interval: 2s
        scrape_timeout: 2s
      scrape_configs:
        - job_name: good
          scheme: https
          tls_config: {{ca_file: {ca}, cert_file: {cert}, key_file: {key}}}
          static_configs:
            - targets: ["127.0.0.1:{port}"]
        - job_name: wrong-ca
          scheme: https
          tls_config: {{ca_file: {other}, cert_file: {cert}, key_file: {key}}}
          static_configs:
            - targets: ["127.0.0.1:{port}"]
{rest}"#,
        ca = pki.path("ca.pem"),
        other = pki.path("other-ca.pem"),
        cert = pki.path("edge-1.pem"),
        key = pki.path("edge-1.key"),
        rest = sink_tail(
            "    metrics:\n      receivers: [prometheus]\n      exporters: [file/metrics]\n"
        ),
    ));
    let points = |job: &str, name: &str| -> Vec<f64> {
        let requests = otlp_json::read_requests(&agent.dir().join("metrics.jsonl"));
        otlp_json::items(Signal::Metrics, &requests)
            .iter()
            .filter(|p| {
                p.metric.as_ref().is_some_and(|m| m.name == name)
                    && p.resource.get("service.name") == Some(&Attr::Str(job.to_owned()))
            })
            .filter_map(|p| p.value["asDouble"].as_f64())
            .collect()
    };
    wait_for(
        Duration::from_secs(30),
        "up of both jobs and the good job's sample",
        || {
            (!points("good", "up").is_empty()
                && !points("wrong-ca", "up").is_empty()
                && !points("good", "tls_target_value").is_empty())
            .then_some(())
        },
        || agent.log(),
    );
    assert!(points("good", "up").iter().all(|v| *v == 1.0));
    assert!(points("good", "tls_target_value")
        .iter()
        .all(|v| *v == 42.0));
    assert!(points("wrong-ca", "up").iter().all(|v| *v == 0.0));
    assert!(
        points("wrong-ca", "tls_target_value").is_empty(),
        "a target that is not trusted must not be read"
    );
    let log = agent.log();
    let line = log
        .lines()
        .find(|l| l.contains("wrong-ca") && l.contains("scrape failed"))
        .unwrap_or_else(|| panic!("no scrape failure logged for wrong-ca:\n{log}"));
    assert!(
        line.contains("UnknownIssuer") || line.contains("unknown issuer"),
        "{line}"
    );
    drop(target);
}

// ---------------------------------------------------------------------------------------------------------
// Syslog over TCP: certificate names and per-client limits

/// `count` RFC 5424 lines over one mTLS connection as `client`, returning once the server closed it;
/// the number of lines written before the connection failed.
fn syslog_over_tls(pki: &Pki, port: u16, client: &str, count: usize) -> usize {
    let config = Arc::new(pki.client_tls(Some(client)));
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, stream);
    for i in 0..count {
        let line =
            format!("<14>1 2026-11-22T00:00:00Z host {client} 1 - - message {i} from {client}\n");
        if tls
            .write_all(line.as_bytes())
            .and_then(|_| tls.flush())
            .is_err()
        {
            return i;
        }
    }
    // Closed gracefully and drained until the server closes: a socket closed with unread data (the
    // server's session tickets) is reset, and a reset discards what the server has not read yet.
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let _ = tls.sock.shutdown(std::net::Shutdown::Write);
    let _ = tls.sock.set_read_timeout(Some(Duration::from_secs(30)));
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);
    count
}

/// Syslog over mTLS admits only the certificate name edge-1: edge-2's connection (its certificate is from
/// the right CA) is closed unread and counted. edge-1 is limited to 100 messages/s: 300 messages sent at
/// once all arrive, but not before the limit allows (about 2 s past the 100-message burst), and the
/// pauses are counted.
#[test]
fn syslog_checks_certificate_names_and_slows_a_client_over_its_limit() {
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
      tls: {{cert_file: {cert}, key_file: {key}, client_ca_file: {ca}}}
      auth:
        client_certificate: {{allowed_names: [edge-1]}}
      rate_limit: {{requests_per_second: 100}}
{rest}"#,
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        ca = pki.path("ca.pem"),
        rest = sink_tail("    logs:\n      receivers: [syslog]\n      exporters: [file/logs]\n"),
    ));
    let _ = syslog_over_tls(&pki, port, "edge-2", 10);
    wait_for(
        Duration::from_secs(10),
        "edge-2 refused and counted",
        || {
            (agent.metric(
                r#"outpost_receiver_auth_failures_total{receiver="syslog",transport="tcp",reason="certificate_name_not_allowed"}"#,
            ) == 1.0)
                .then_some(())
        },
        || agent.metrics_text(),
    );

    let started = Instant::now();
    assert_eq!(syslog_over_tls(&pki, port, "edge-1", 300), 300);
    wait_count(&agent, Signal::Logs, 300);
    let took = started.elapsed();
    // 100 in the burst, 200 more at 100/s.
    assert!(took >= Duration::from_millis(1500), "took {took:?}");
    std::thread::sleep(Duration::from_millis(300));
    let requests = otlp_json::read_requests(&agent.dir().join("logs.jsonl"));
    let items = otlp_json::items(Signal::Logs, &requests);
    assert_eq!(items.len(), 300, "nothing from edge-2, nothing twice");
    assert!(items
        .iter()
        .all(|i| i.attr("appname") == Some(&Attr::Str("edge-1".into()))));
    assert!(
        agent.metric(
            r#"outpost_receiver_rate_limited_requests_total{receiver="syslog",limit="messages"}"#
        ) >= 1.0
    );
    assert_eq!(
        agent.metric(r#"outpost_receiver_dropped_items_total{receiver="syslog"}"#),
        0.0
    );
}

// ---------------------------------------------------------------------------------------------------------
// The admin endpoint over TLS

/// `service.telemetry.metrics.tls` puts the node's own /metrics behind mTLS on its own address, while the
/// health_check endpoint stays plaintext: a second outpost scrapes it with its client certificate (`up` 1,
/// the first node's metrics arrive), a client without a certificate is refused and counted.
#[test]
fn admin_metrics_over_mtls_are_scraped_by_a_second_outpost() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (grpc, metrics_port) = (free_port(), free_port());
    let node = Agent::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
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
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
      tls: {{cert_file: {cert}, key_file: {key}, client_ca_file: {ca}}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#,
        cert = pki.path("server.pem"),
        key = pki.path("server.key"),
        ca = pki.path("ca.pem"),
    ));
    let scraper = Agent::start(&format!(
        r#"
receivers:
  prometheus:
    config:
      global:
        scrape_interval: 2s
        scrape_timeout: 2s
      scrape_configs:
        - job_name: edge-node
          scheme: https
          tls_config: {{ca_file: {ca}, cert_file: {cert}, key_file: {key}}}
          static_configs:
            - targets: ["127.0.0.1:{metrics_port}"]
{rest}"#,
        ca = pki.path("ca.pem"),
        cert = pki.path("edge-1.pem"),
        key = pki.path("edge-1.key"),
        rest = sink_tail(
            "    metrics:\n      receivers: [prometheus]\n      exporters: [file/metrics]\n"
        ),
    ));
    let names = || -> Vec<(String, f64)> {
        let requests = otlp_json::read_requests(&scraper.dir().join("metrics.jsonl"));
        otlp_json::items(Signal::Metrics, &requests)
            .iter()
            .filter_map(|p| {
                let m = p.metric.as_ref()?;
                let v = p.value["asDouble"]
                    .as_f64()
                    .or_else(|| p.int_field("asInt").map(|i| i as f64))?;
                Some((m.name.clone(), v))
            })
            .collect()
    };
    wait_for(
        Duration::from_secs(30),
        "the node's own metrics scraped over mTLS",
        || {
            let n = names();
            (n.iter().any(|(name, _)| name == "up")
                && n.iter().any(|(name, _)| name.starts_with("outpost_")))
            .then_some(())
        },
        || scraper.log(),
    );
    assert!(names()
        .iter()
        .filter(|(n, _)| n == "up")
        .all(|(_, v)| *v == 1.0));

    // Without a client certificate: refused at the handshake, counted (read on the plaintext endpoint).
    let refused = runtime().block_on(async {
        https(&pki, None)
            .get(format!("https://127.0.0.1:{metrics_port}/metrics"))
            .send()
            .await
    });
    assert!(refused.is_err(), "{refused:?}");
    wait_for(
        Duration::from_secs(10),
        "the refused handshake counted",
        || {
            (node.metric(
                r#"outpost_receiver_auth_failures_total{receiver="admin",reason="no_client_certificate"}"#,
            ) >= 1.0)
                .then_some(())
        },
        || node.metrics_text(),
    );
    // With one: served.
    let ok = runtime().block_on(async {
        https(&pki, Some("edge-1"))
            .get(format!("https://127.0.0.1:{metrics_port}/metrics"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(ok, 200);
}
