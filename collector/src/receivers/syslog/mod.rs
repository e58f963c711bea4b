//! Receiver `syslog`: RFC 5424 or RFC 3164 messages over UDP and TCP, as OTLP log records.
//!
//! # Mapping
//!
//! As the OpenTelemetry Collector's syslog receiver does: the body is the message as received; the
//! parsed fields are attributes `appname`, `hostname`, `proc_id`, `msg_id`, `message`, `priority`,
//! `facility`, `version` and `structured_data` (a map of SD-IDs to maps of parameters); the syslog
//! severity sets `severity_number` (emerg FATAL, alert ERROR3, crit ERROR2, err ERROR, warning WARN,
//! notice INFO2, info INFO, debug DEBUG) and `severity_text` (`emerg` … `debug`); the timestamp sets
//! the record's time.
//!
//! # What is never silent
//!
//! - A message that does not parse is kept: the raw text as body, a `log.parse_error` attribute saying
//!   why, its priority fields if at least those were readable, and a count in
//!   `outpost_receiver_malformed_items_total{reason="rfc5424"|"rfc3164"}`. A TCP message longer than
//!   `max_log_size` is cut (counted, reason `max_log_size`).
//! - UDP has no way to push back: what a pipeline refuses (queue above its high watermark, memory
//!   limit) is dropped and counted in `outpost_receiver_dropped_items_total` with the refusal's reason.
//! - TCP pushes back: a connection whose batch is refused stops reading its socket until a pipeline
//!   takes the batch, so the sender's writes block in the kernel instead of data being dropped.
//!
//! # Who may send, and how much (TCP)
//!
//! Syslog has no headers, so `tcp.auth` can only check the mTLS identity: a connection whose client
//! certificate names none of `client_certificate.allowed_names` is closed before a byte is read and
//! counted in `outpost_receiver_auth_failures_total`. `tcp.rate_limit` gives each client (its certificate
//! name with `auth`, else its IP address) a budget of messages (`requests_per_second`) and bytes per
//! second: what was read is charged, and a client over its budget is not read again until the debt is
//! paid, so TCP slows the sender down; nothing is dropped. Each pause is counted in
//! `outpost_receiver_rate_limited_requests_total{limit="messages"|"bytes"}`.

pub mod framing;
pub mod rfc3164;
pub mod rfc5424;

use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use outpost_config::{ComponentId, FramingTrailer, Signal, SyslogProtocol, SyslogReceiverConfig};
use outpost_pipelines::telemetry::ReceiverMetrics;
use outpost_pipelines::{Logs, Refusal, Telemetry};
use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use self::framing::{Frame, Framer};
use super::logrecord::{self, PARSE_ERROR_ATTRIBUTE};
use super::offer::Offer;
use super::Inputs;
use crate::net::LimitedListener;
use crate::receivers::gate::{ClientKey, Gate};

/// Messages per batch handed to the pipelines.
const BATCH: usize = 1024;
/// How long a refused TCP batch waits before it is offered again.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Why a message did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

/// The fields of a syslog message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub priority: u8,
    pub facility: u8,
    pub severity: u8,
    pub version: Option<u16>,
    /// Unix nanoseconds.
    pub timestamp: Option<i128>,
    pub hostname: Option<String>,
    pub appname: Option<String>,
    pub proc_id: Option<String>,
    pub msg_id: Option<String>,
    pub structured_data: Vec<(String, Vec<(String, String)>)>,
    pub message: Option<String>,
}

impl Message {
    fn from_pri(priority: u8) -> Message {
        Message {
            priority,
            facility: priority / 8,
            severity: priority % 8,
            ..Default::default()
        }
    }
}

/// `<PRI>` at the start of `text` (0 to 191), and the text after it.
pub(crate) fn pri(text: &str) -> Result<(u8, &str), ParseError> {
    let bad = || ParseError("missing <PRI> (expected <0> to <191> at the start)".into());
    let rest = text.strip_prefix('<').ok_or_else(bad)?;
    let (digits, rest) = rest.split_once('>').ok_or_else(bad)?;
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let value: u8 = digits.parse().map_err(|_| bad())?;
    if value > 191 {
        return Err(bad());
    }
    Ok((value, rest))
}

/// OpenTelemetry severity numbers of the syslog severities 0 (emerg) to 7 (debug), as the
/// OpenTelemetry Collector maps them.
const SEVERITY_NUMBER: [i32; 8] = [21, 19, 18, 17, 13, 10, 9, 5];
const SEVERITY_TEXT: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Parses raw messages of one protocol into log records.
pub struct Parser {
    protocol: SyslogProtocol,
    zone: TimeZone,
}

impl Parser {
    pub fn new(protocol: SyslogProtocol, location: Option<&str>) -> Result<Parser, String> {
        let zone = match location {
            None => TimeZone::UTC,
            Some(l) if l.eq_ignore_ascii_case("local") => TimeZone::system(),
            Some(l) => TimeZone::get(l).map_err(|e| format!("'{l}': {e}"))?,
        };
        Ok(Parser { protocol, zone })
    }

    fn reason(&self) -> &'static str {
        match self.protocol {
            SyslogProtocol::Rfc5424 => "rfc5424",
            SyslogProtocol::Rfc3164 => "rfc3164",
        }
    }

    /// One record for one message, parsed or kept raw. The error, if any, is returned for counting.
    pub fn record(&self, raw: &[u8], observed: u64) -> (LogRecord, Option<ParseError>) {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches(['\n', '\r', '\0']);
        let parsed = match self.protocol {
            SyslogProtocol::Rfc5424 => rfc5424::parse(text),
            SyslogProtocol::Rfc3164 => rfc3164::parse(text, &self.zone, jiff::Timestamp::now()),
        };
        let mut record = LogRecord {
            observed_time_unix_nano: observed,
            body: Some(logrecord::string(text)),
            ..Default::default()
        };
        match parsed {
            Ok(m) => {
                fill(&mut record, m);
                (record, None)
            }
            Err(e) => {
                // The priority alone is still worth having when the rest is garbled.
                if let Ok((p, _)) = pri(text) {
                    let m = Message::from_pri(p);
                    set_severity(&mut record, &m);
                    priority_attrs(&mut record.attributes, &m);
                }
                record.attributes.push(logrecord::kv(
                    PARSE_ERROR_ATTRIBUTE,
                    logrecord::string(format!("{}: {}", self.reason(), e.0)),
                ));
                (record, Some(e))
            }
        }
    }
}

fn set_severity(record: &mut LogRecord, m: &Message) {
    let s = usize::from(m.severity.min(7));
    record.severity_number = SEVERITY_NUMBER[s];
    record.severity_text = SEVERITY_TEXT[s].to_owned();
}

fn priority_attrs(attrs: &mut Vec<KeyValue>, m: &Message) {
    attrs.push(logrecord::kv(
        "priority",
        logrecord::int(i64::from(m.priority)),
    ));
    attrs.push(logrecord::kv(
        "facility",
        logrecord::int(i64::from(m.facility)),
    ));
}

fn fill(record: &mut LogRecord, m: Message) {
    set_severity(record, &m);
    if let Some(ts) = m.timestamp {
        record.time_unix_nano = u64::try_from(ts).unwrap_or(0);
    }
    let attrs = &mut record.attributes;
    priority_attrs(attrs, &m);
    for (key, value) in [
        ("hostname", m.hostname),
        ("appname", m.appname),
        ("proc_id", m.proc_id),
        ("msg_id", m.msg_id),
        ("message", m.message),
    ] {
        if let Some(v) = value {
            attrs.push(logrecord::kv(key, logrecord::string(v)));
        }
    }
    if let Some(v) = m.version {
        attrs.push(logrecord::kv("version", logrecord::int(i64::from(v))));
    }
    if !m.structured_data.is_empty() {
        let elements = m
            .structured_data
            .into_iter()
            .map(|(id, params)| {
                let params = params
                    .into_iter()
                    .map(|(k, v)| logrecord::kv(k, logrecord::string(v)))
                    .collect();
                logrecord::kv(id, logrecord::kvlist(params))
            })
            .collect();
        attrs.push(logrecord::kv(
            "structured_data",
            logrecord::kvlist(elements),
        ));
    }
}

/// Binds the enabled transports of one `syslog` receiver and starts serving. Bind failures are all
/// returned, each naming its config key.
pub async fn start(
    id: &ComponentId,
    cfg: &SyslogReceiverConfig,
    inputs: Inputs,
    telemetry: &Telemetry,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, Vec<String>> {
    let parser = Arc::new(
        Parser::new(cfg.protocol, cfg.location.as_deref())
            .map_err(|e| vec![format!("receivers.{id}.location: {e}")])?,
    );
    let mut handles = Vec::new();
    let mut errors = Vec::new();
    if let Some(udp) = &cfg.udp {
        let key = format!("receivers.{id}.udp.listen_address");
        match UdpSocket::bind(udp.listen_address).await {
            Ok(socket) => handles.push(tokio::spawn(serve_udp(
                socket,
                parser.clone(),
                inputs.clone(),
                telemetry.receiver(&id.to_string(), "udp"),
                shutdown.clone(),
            ))),
            Err(e) => errors.push(format!(
                "{key}: cannot listen on {} (UDP): {e} (is another process using the port?)",
                udp.listen_address
            )),
        }
    }
    if let Some(tcp) = &cfg.tcp {
        let key = format!("receivers.{id}.tcp.listen_address");
        let metrics = telemetry.receiver(&id.to_string(), "tcp");
        let guard = super::otlp::guard(
            &format!("receivers.{id}.tcp"),
            tcp.tls.as_ref(),
            tcp.auth.as_ref(),
            tcp.rate_limit.as_ref(),
            &metrics,
            telemetry,
            &[],
        );
        match (crate::net::bind(tcp.listen_address, &key).await, guard) {
            (Err(e), _) | (_, Err(e)) => errors.push(e),
            (Ok(listener), Ok((tls, gate))) => {
                let conn = Connection {
                    parser: parser.clone(),
                    inputs: inputs.clone(),
                    metrics,
                    gate,
                    trailer: match cfg.non_transparent_framing_trailer {
                        FramingTrailer::LF => b'\n',
                        FramingTrailer::NUL => 0,
                    },
                    max_log_size: usize::try_from(tcp.max_log_size.bytes()).unwrap_or(usize::MAX),
                };
                handles.push(tokio::spawn(serve_tcp(
                    LimitedListener::with_tls(listener, tcp.max_connections, tls),
                    Arc::new(conn),
                    shutdown.clone(),
                )));
            }
        }
    }
    if errors.is_empty() {
        Ok(handles)
    } else {
        shutdown.cancel();
        Err(errors)
    }
}

/// Parses `frames` into one request, counting what did not parse or was cut.
fn batch(
    parser: &Parser,
    metrics: &ReceiverMetrics,
    frames: impl IntoIterator<Item = Frame>,
) -> (Logs, usize, u64) {
    let observed = logrecord::now_unix_nanos();
    let mut records = Vec::new();
    let (mut bytes, mut malformed, mut cut) = (0u64, 0, 0);
    for frame in frames {
        bytes += frame.bytes.len() as u64;
        cut += usize::from(frame.cut);
        let (record, error) = parser.record(&frame.bytes, observed);
        malformed += usize::from(error.is_some());
        records.push(record);
    }
    if malformed > 0 {
        metrics.malformed(Signal::Logs, parser.reason(), malformed);
    }
    if cut > 0 {
        metrics.malformed(Signal::Logs, "max_log_size", cut);
    }
    let items = records.len();
    (logrecord::request(records), items, bytes)
}

/// Counts the outcome of an admitted batch once its pipelines have queued it (or failed to).
fn settle(offer: Offer<Logs>, items: usize, metrics: ReceiverMetrics) {
    tokio::spawn(async move {
        match offer.wait().await {
            Ok(()) => metrics.accepted(Signal::Logs, items),
            Err(refusal) => metrics.dropped(Signal::Logs, refusal.reason(), items),
        }
    });
}

async fn serve_udp(
    socket: UdpSocket,
    parser: Arc<Parser>,
    inputs: Inputs,
    metrics: ReceiverMetrics,
    shutdown: CancellationToken,
) {
    // One datagram is one message (RFC 5426); 64 KiB holds the largest datagram there is.
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _)) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "syslog UDP receive failed");
                    continue;
                }
            },
        };
        let mut frames = vec![Frame {
            bytes: buf[..n].to_vec(),
            cut: false,
        }];
        // Whatever else already waits goes into the same batch.
        while frames.len() < BATCH {
            match socket.try_recv_from(&mut buf) {
                Ok((n, _)) => frames.push(Frame {
                    bytes: buf[..n].to_vec(),
                    cut: false,
                }),
                Err(_) => break,
            }
        }
        let (logs, items, bytes) = batch(&parser, &metrics, frames);
        let mut offer = Offer::new(logs, bytes);
        match offer.try_admit(&inputs.current().logs) {
            Ok(()) => settle(offer, items, metrics.clone()),
            Err(refusal) => {
                // A datagram cannot be refused back to its sender: count what is lost, and why.
                metrics.dropped(Signal::Logs, refusal.reason(), items);
                if offer.admitted() > 0 {
                    settle(offer, 0, metrics.clone());
                }
            }
        }
    }
}

/// What every TCP connection of one receiver shares.
struct Connection {
    parser: Arc<Parser>,
    inputs: Inputs,
    metrics: ReceiverMetrics,
    gate: Arc<Gate>,
    trailer: u8,
    max_log_size: usize,
}

async fn serve_tcp(
    mut listener: LimitedListener,
    conn: Arc<Connection>,
    shutdown: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            (stream, peer) = listener.accept_limited() => {
                connections.spawn(read_connection(stream, peer, conn.clone(), shutdown.clone()));
            }
        }
    }
    while connections.join_next().await.is_some() {}
}

async fn read_connection(
    mut stream: crate::net::LimitedStream,
    peer: std::net::SocketAddr,
    conn: Arc<Connection>,
    shutdown: CancellationToken,
) {
    // An unauthenticated client is refused (and counted by the gate) before anything it sent is read.
    let client: ClientKey = match conn
        .gate
        .identify(&http::HeaderMap::new(), Some(stream.peer()))
    {
        Ok(client) => client,
        Err(denied) => {
            tracing::debug!(%peer, reason = %denied.message(), "syslog TCP connection refused");
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            return;
        }
    };
    let mut framer = Framer::new(conn.trailer, conn.max_log_size);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            r = stream.read(&mut buf) => match r {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "syslog TCP connection failed");
                    0
                }
            },
        };
        let eof = n == 0;
        framer.push(&buf[..n]);
        let mut frames: Vec<Frame> = std::iter::from_fn(|| framer.next_frame()).collect();
        if eof {
            frames.extend(framer.finish());
        }
        // Over its budget, what was just read is held (at most one read buffer) and the client is not
        // read until the debt is paid: its writes back up in the kernel's buffers, then block.
        let pause = conn.gate.throttle(&client, frames.len() as u64, n as u64);
        if !pause.is_zero() {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        while !frames.is_empty() {
            let rest = frames.split_off(frames.len().min(BATCH));
            if !offer_until_taken(&conn, frames, &shutdown).await {
                return;
            }
            frames = rest;
        }
        if eof {
            return;
        }
    }
}

/// Offers a batch until the pipelines take it; meanwhile the connection is not read, which is the
/// backpressure. Returns false when the batch could not be delivered (shutdown, pipeline stopped).
async fn offer_until_taken(
    conn: &Connection,
    frames: Vec<Frame>,
    shutdown: &CancellationToken,
) -> bool {
    let (logs, items, bytes) = batch(&conn.parser, &conn.metrics, frames);
    let mut offer = Offer::new(logs, bytes);
    loop {
        match offer.try_admit(&conn.inputs.current().logs) {
            Ok(()) => {
                settle(offer, items, conn.metrics.clone());
                return true;
            }
            Err(Refusal::Pressure(_)) if !shutdown.is_cancelled() => {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                }
            }
            Err(refusal) => {
                let reason = if shutdown.is_cancelled() {
                    "shutdown"
                } else {
                    refusal.reason()
                };
                conn.metrics.dropped(Signal::Logs, reason, items);
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    fn attr<'r>(r: &'r LogRecord, key: &str) -> Option<&'r Value> {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn a_5424_message_becomes_a_record_with_otel_fields() {
        let p = Parser::new(SyslogProtocol::Rfc5424, None).unwrap();
        let raw = br#"<156>1 2024-05-01T10:00:00Z vm myapp 4242 MSG1 [ex@32473 k="v"] hello"#;
        let (r, err) = p.record(raw, 1);
        assert_eq!(err, None);
        assert_eq!(
            (r.severity_number, r.severity_text.as_str()),
            (13, "warning")
        );
        assert_eq!(r.time_unix_nano, 1_714_557_600_000_000_000);
        assert_eq!(attr(&r, "hostname"), Some(&Value::StringValue("vm".into())));
        assert_eq!(
            attr(&r, "appname"),
            Some(&Value::StringValue("myapp".into()))
        );
        assert_eq!(
            attr(&r, "proc_id"),
            Some(&Value::StringValue("4242".into()))
        );
        assert_eq!(attr(&r, "msg_id"), Some(&Value::StringValue("MSG1".into())));
        assert_eq!(
            attr(&r, "message"),
            Some(&Value::StringValue("hello".into()))
        );
        assert_eq!(attr(&r, "facility"), Some(&Value::IntValue(19)));
        assert_eq!(attr(&r, "priority"), Some(&Value::IntValue(156)));
        assert_eq!(attr(&r, "version"), Some(&Value::IntValue(1)));
        let Some(Value::KvlistValue(sd)) = attr(&r, "structured_data") else {
            panic!("structured_data is a map");
        };
        assert_eq!(sd.values[0].key, "ex@32473");
        assert_eq!(
            r.body.as_ref().and_then(logrecord::as_str),
            Some(std::str::from_utf8(raw).unwrap())
        );
    }

    #[test]
    fn malformed_messages_are_kept_raw_with_the_reason() {
        let p = Parser::new(SyslogProtocol::Rfc5424, None).unwrap();
        let (r, err) = p.record(b"<11>not a 5424 message\n", 1);
        assert!(err.is_some());
        assert_eq!(
            r.body.as_ref().and_then(logrecord::as_str),
            Some("<11>not a 5424 message")
        );
        let Some(Value::StringValue(why)) = attr(&r, PARSE_ERROR_ATTRIBUTE) else {
            panic!("a parse error attribute");
        };
        assert!(why.starts_with("rfc5424: "), "{why}");
        // The priority was readable, so severity is set.
        assert_eq!((r.severity_number, r.severity_text.as_str()), (17, "err"));
        let (r, _) = p.record(b"\xFFgarbage", 1);
        assert_eq!(r.severity_number, 0);
        assert!(attr(&r, PARSE_ERROR_ATTRIBUTE).is_some());
    }

    #[test]
    fn every_syslog_severity_maps_like_the_collector() {
        let p = Parser::new(SyslogProtocol::Rfc3164, Some("UTC")).unwrap();
        let got: Vec<(i32, String)> = (0..8)
            .map(|s| {
                let (r, _) = p.record(format!("<{}>Jan  1 00:00:00 h a: m", 8 + s).as_bytes(), 1);
                (r.severity_number, r.severity_text)
            })
            .collect();
        let names = [
            "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
        ];
        let numbers = [21, 19, 18, 17, 13, 10, 9, 5];
        let want: Vec<(i32, String)> = numbers
            .iter()
            .zip(names)
            .map(|(n, t)| (*n, t.to_owned()))
            .collect();
        assert_eq!(got, want);
        assert!(Parser::new(SyslogProtocol::Rfc3164, Some("Mars/Olympus")).is_err());
    }
}
