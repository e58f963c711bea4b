//! Exporters: the way out of outpost. Each exporter of a pipeline reads the pipeline's disk queue through
//! its own cursor ([`run`]) and delivers up to `num_consumers` records at once; the cursor moves only over
//! the contiguous prefix of records that are done, so a crash re-sends at most what was in flight.
//!
//! A record is done when the destination accepted it, or when a counted rule dropped it: a permanent
//! refusal, `max_age`, `retry_on_failure.max_elapsed_time`, a single item too large to send. A retryable
//! failure never drops data by default: the record is retried with backoff behind the exporter's circuit
//! breaker, paced by its bandwidth cap ([`delivery`]). An exporter is written once, generic over the
//! signal ([`OtlpSignal`]); [`Factory`] builds it from the config and only turns a payload into a request.

pub mod credentials;
pub mod debug;
pub mod delivery;
pub mod file;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod prometheus_remote_write;

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use outpost_config::{
    CircuitBreakerConfig, ComponentId, Compression, DeliveryConfig, DrainOrder, ExporterConfig,
    RetryConfig,
};
use outpost_pipelines::queue::{Cursor, QueueError, Record};
use outpost_pipelines::telemetry::ExporterMetrics;
use tokio_util::sync::CancellationToken;

use delivery::{Backoff, Bandwidth, Breaker};

use crate::otlp::{OtlpSignal, Rejected};

/// What a destination said about a delivered payload.
#[derive(Debug, Default)]
pub struct Delivered {
    pub wire_bytes: usize,
    pub rejected: Rejected,
    /// Items the exporter did not deliver for a reason of its own (one it cannot translate for the
    /// destination, or a part of a multi-request payload the destination refused), by reason: counted
    /// as failed, the rest as sent.
    pub dropped: Vec<(String, usize)>,
}

/// What a failure means for the data, which decides what the runner does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Network or server trouble: the same data can succeed later. Kept queued and retried.
    Retryable,
    /// The destination judged the data and refused it: dropped and counted.
    Permanent,
    /// The request was too large for the destination: split in halves and each retried.
    TooLarge,
    /// 401 / 403 / UNAUTHENTICATED / PERMISSION_DENIED: retried `auth_failure_attempts` times (a rotated
    /// credential often fixes itself), then treated as permanent.
    Unauthorized,
}

/// Why a delivery failed. `reason` is a short, bounded label for `/metrics`.
#[derive(Debug)]
pub struct ExportError {
    pub reason: String,
    pub message: String,
    pub class: ErrorClass,
    /// How long the destination asked us to wait (Retry-After, gRPC RetryInfo).
    pub retry_after: Option<Duration>,
}

impl ExportError {
    pub fn new(class: ErrorClass, reason: impl Into<String>, message: impl ToString) -> Self {
        Self {
            reason: reason.into(),
            message: message.to_string(),
            class,
            retry_after: None,
        }
    }

    pub fn retryable(reason: impl Into<String>, message: impl ToString) -> Self {
        Self::new(ErrorClass::Retryable, reason, message)
    }

    pub fn permanent(reason: impl Into<String>, message: impl ToString) -> Self {
        Self::new(ErrorClass::Permanent, reason, message)
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }
}

/// Classifies an HTTP error response per the OTLP/HTTP specification (429, 502, 503, 504 retryable,
/// honouring Retry-After), with 413 split and 401 / 403 retried a few times.
pub fn http_error(status: u16, headers: &http::HeaderMap, body: &[u8]) -> ExportError {
    let class = match status {
        429 | 502 | 503 | 504 => ErrorClass::Retryable,
        413 => ErrorClass::TooLarge,
        401 | 403 => ErrorClass::Unauthorized,
        _ => ErrorClass::Permanent,
    };
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    ExportError::new(
        class,
        format!("http_{status}"),
        String::from_utf8_lossy(&body[..body.len().min(512)]),
    )
    .with_retry_after(retry_after)
}

/// A Retry-After value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3). Capped at an hour so a
/// misconfigured server cannot park an exporter for days.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let d = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or_default(),
    };
    Some(d.min(Duration::from_secs(3600)))
}

/// One queued export request: its prost encoding as stored, decoded only by exporters that need to.
pub struct Payload<T> {
    pub bytes: Bytes,
    pub items: usize,
    _signal: PhantomData<fn() -> T>,
}

impl<T: OtlpSignal> Payload<T> {
    pub fn new(bytes: Bytes, items: usize) -> Self {
        Self {
            bytes,
            items,
            _signal: PhantomData,
        }
    }

    pub fn decode(&self) -> Result<T, ExportError> {
        T::decode(self.bytes.clone()).map_err(|e| ExportError::permanent("undecodable_record", e))
    }

    /// Two payloads with half the items each, for a destination that found this one too large. `None`
    /// when there is a single item (it cannot be made smaller) or the payload does not decode.
    fn halves(&self) -> Option<(Self, Self)> {
        let mut rest = self.decode().ok()?;
        let n = rest.item_count();
        if n < 2 {
            return None;
        }
        let mut head = rest.split_front(n / 2);
        head.prune_empty();
        rest.prune_empty();
        let (hn, rn) = (head.item_count(), rest.item_count());
        Some((
            Self::new(Bytes::from(head.encode_to_vec()), hn),
            Self::new(Bytes::from(rest.encode_to_vec()), rn),
        ))
    }
}

/// An exporter: turns one payload into one request. Shared by up to `num_consumers` concurrent
/// deliveries, so `export` takes `&self`.
pub trait Exporter<T>: Send + Sync + 'static {
    fn export<'a>(
        &'a self,
        payload: &'a Payload<T>,
    ) -> BoxFuture<'a, Result<Delivered, ExportError>>;

    /// False when the exporter uses only a payload's item count, never its bytes: the queue then
    /// hands it records without decompressing them.
    fn reads_payloads(&self) -> bool {
        true
    }

    /// Called once when the pipeline stops: write out anything buffered.
    fn shutdown(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Builds exporters, sharing what must be shared between the instances one exporter id gets per signal:
/// a file's writer, and the bandwidth budget of one destination.
#[derive(Default)]
pub struct Factory {
    files: HashMap<PathBuf, Arc<Mutex<file::FileWriter>>>,
    bandwidth: HashMap<ComponentId, Arc<Bandwidth>>,
    /// Where TLS files' expiry and reloads are reported.
    telemetry: outpost_pipelines::Telemetry,
    /// One client TLS config (and so one watcher of its files) per exporter and protocol.
    tls: HashMap<(ComponentId, bool), Arc<rustls::ClientConfig>>,
}

impl Factory {
    pub fn new(telemetry: &outpost_pipelines::Telemetry) -> Self {
        Self {
            telemetry: telemetry.clone(),
            ..Self::default()
        }
    }

    /// The client TLS config of exporter `id`; `grpc` selects the `h2` ALPN.
    pub fn client_tls(
        &mut self,
        id: &ComponentId,
        tls: &outpost_config::TlsConfig,
        grpc: bool,
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        if let Some(c) = self.tls.get(&(id.clone(), grpc)) {
            return Ok(c.clone());
        }
        let alpn: &[&[u8]] = if grpc {
            &[b"h2"]
        } else {
            &[b"h2", b"http/1.1"]
        };
        let config =
            crate::tls::client_config(tls, &self.telemetry.tls(&format!("exporters.{id}")), alpn)
                .map_err(|e| format!("exporters.{id}.tls: {e}"))?;
        self.tls.insert((id.clone(), grpc), config.clone());
        Ok(config)
    }

    /// The bandwidth budget of exporter `id`, shared by all its signals; `None` when it has no cap.
    pub fn bandwidth(&mut self, id: &ComponentId, d: &DeliveryConfig) -> Option<Arc<Bandwidth>> {
        let rate = d.max_bytes_per_second?;
        Some(
            self.bandwidth
                .entry(id.clone())
                .or_insert_with(|| {
                    Arc::new(Bandwidth::new(
                        rate.bytes(),
                        d.burst_bytes.map(|b| b.bytes()),
                    ))
                })
                .clone(),
        )
    }

    /// Builds the exporter `id` for signal `T`.
    pub fn build<T: OtlpSignal>(
        &mut self,
        id: &ComponentId,
        cfg: &ExporterConfig,
        bandwidth: Option<Arc<Bandwidth>>,
    ) -> Result<Box<dyn Exporter<T>>, String> {
        Ok(match cfg {
            ExporterConfig::Otlp(c) => {
                let tls = match otlp_grpc::uses_tls(c) {
                    true => Some(self.client_tls(id, &c.tls, true)?),
                    false => None,
                };
                Box::new(otlp_grpc::OtlpGrpcExporter::new(id, c, bandwidth, tls)?)
            }
            ExporterConfig::OtlpHttp(c) => {
                let tls = match c.signal_url(T::SIGNAL) {
                    Some(url) if url.starts_with("https://") => {
                        Some(self.client_tls(id, &c.tls, false)?)
                    }
                    _ => None,
                };
                Box::new(otlp_http::OtlpHttpExporter::new::<T>(
                    id, c, bandwidth, tls,
                )?)
            }
            ExporterConfig::Debug(c) => Box::new(debug::DebugExporter::new(id, c)),
            ExporterConfig::PrometheusRemoteWrite(c) => {
                let tls = match c.endpoint.starts_with("https://") {
                    true => Some(self.client_tls(id, &c.tls, false)?),
                    false => None,
                };
                prometheus_remote_write::PrometheusRemoteWriteExporter::build::<T>(
                    id, c, bandwidth, tls,
                )?
            }
            ExporterConfig::File(c) => {
                let writer = match self.files.get(&c.path) {
                    Some(w) => w.clone(),
                    None => {
                        let w = Arc::new(Mutex::new(file::FileWriter::open(id, c)?));
                        self.files.insert(c.path.clone(), w.clone());
                        w
                    }
                };
                Box::new(file::FileExporter::new(writer))
            }
        })
    }
}

/// How one exporter delivers, resolved from its config.
pub struct Policy {
    pub retry: RetryConfig,
    pub breaker: CircuitBreakerConfig,
    pub bandwidth: Option<Arc<Bandwidth>>,
    /// Requests in flight at once (`sending_queue.num_consumers`).
    pub in_flight: usize,
    pub newest_first: bool,
    pub max_age: Option<Duration>,
}

impl Policy {
    pub fn new(d: &DeliveryConfig, bandwidth: Option<Arc<Bandwidth>>) -> Self {
        Self {
            retry: d.retry_on_failure.clone(),
            breaker: d.circuit_breaker.clone(),
            bandwidth,
            in_flight: d.sending_queue.num_consumers.max(1),
            newest_first: d.sending_queue.drain_order == DrainOrder::NewestFirst,
            max_age: d.sending_queue.max_age.map(|a| a.get()),
        }
    }
}

/// How long an exporter told to finish waits for another record before it stops.
const FINISH_IDLE: Duration = Duration::from_millis(50);
const READ_RETRY: Duration = Duration::from_secs(1);

/// What became of one record.
enum Outcome {
    /// Delivered, or dropped by a counted rule: the cursor may pass it.
    Done,
    /// Given up because outpost is stopping while the destination fails: it stays queued.
    Abandoned,
}

/// What became of one payload (a record, or a half of one).
enum Step {
    Done,
    Split,
    Abandoned,
}

/// Runs one exporter over its cursor until `finish`: then it delivers what is already queued while the
/// destination accepts it, and leaves (what it could not deliver stays queued for the next start).
///
/// Up to `policy.in_flight` records are delivered at once; the cursor's watermark moves only over the
/// contiguous acknowledged prefix, so a crash re-sends at most what was in flight.
///
/// `abandon` (with `finish`) is how a reload replaces the exporter: it reads nothing more, its requests
/// in flight end or give up, and what is not acknowledged stays queued for its successor.
pub async fn run<T: OtlpSignal>(
    id: String,
    mut exporter: Box<dyn Exporter<T>>,
    mut cursor: Cursor,
    metrics: ExporterMetrics,
    policy: Policy,
    finish: CancellationToken,
    abandon: CancellationToken,
) {
    if policy.newest_first {
        cursor.set_newest_first(true);
    }
    cursor.set_read_payloads(exporter.reads_payloads());
    {
        let breaker = Breaker::new(&policy.breaker, metrics.circuit_open_gauge());
        let ctx = Deliverer {
            id: &id,
            exporter: &*exporter,
            metrics: &metrics,
            policy: &policy,
            breaker: &breaker,
            finish: &finish,
            log: Mutex::new(LogLimiter::default()),
        };
        let mut pending: VecDeque<Record> = VecDeque::new();
        let mut slots = FuturesUnordered::new();
        let mut abandoned = false;
        let mut closed = false;
        loop {
            while slots.len() < policy.in_flight && !abandoned {
                let Some(record) = pending.pop_front() else {
                    break;
                };
                slots.push(ctx.deliver(record));
            }
            metrics.set_in_flight(slots.len());
            let free = policy.in_flight.saturating_sub(slots.len());
            let can_read = pending.is_empty() && free > 0 && !abandoned && !closed;
            if !can_read && slots.is_empty() {
                break;
            }
            tokio::select! {
                Some((seq, outcome)) = slots.next(), if !slots.is_empty() => match outcome {
                    Outcome::Done => {
                        if let Err(e) = cursor.ack(seq) {
                            if e != QueueError::Closed {
                                tracing::error!(exporter = %id, error = %e, "cannot advance the queue cursor; the record may be sent again");
                            }
                        }
                    }
                    Outcome::Abandoned => abandoned = true,
                },
                _ = abandon.cancelled(), if !abandoned => abandoned = true,
                next = read_next(&mut cursor, &finish, free), if can_read => match next {
                    Ok(Some(records)) => pending.extend(records),
                    Ok(None) if slots.is_empty() => break, // finishing and caught up
                    Ok(None) => {}
                    Err(QueueError::Closed) => closed = true,
                    Err(e) => {
                        tracing::error!(exporter = %id, error = %e, "cannot read the queue; retrying in 1s");
                        tokio::time::sleep(READ_RETRY).await;
                    }
                },
            }
        }
        metrics.set_in_flight(0);
    }
    exporter.shutdown().await;
}

/// The next records, or `None` when finishing and nothing new arrived for [`FINISH_IDLE`].
async fn read_next(
    cursor: &mut Cursor,
    finish: &CancellationToken,
    max: usize,
) -> Result<Option<Vec<Record>>, QueueError> {
    if !finish.is_cancelled() {
        tokio::select! {
            r = cursor.next_batch(max) => return r.map(Some),
            _ = finish.cancelled() => {}
        }
    }
    match tokio::time::timeout(FINISH_IDLE, cursor.next_batch(max)).await {
        Ok(r) => r.map(Some),
        Err(_) => Ok(None),
    }
}

/// Delivers records for one exporter: retries, breaker, bandwidth, splitting, dropping by rule.
struct Deliverer<'a, T> {
    id: &'a str,
    exporter: &'a dyn Exporter<T>,
    metrics: &'a ExporterMetrics,
    policy: &'a Policy,
    breaker: &'a Breaker,
    finish: &'a CancellationToken,
    log: Mutex<LogLimiter>,
}

impl<T: OtlpSignal> Deliverer<'_, T> {
    fn log_allowed(&self) -> bool {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).allow()
    }

    async fn deliver(&self, record: Record) -> (u64, Outcome) {
        let seq = record.seq;
        let created_at = record.created_at;
        let mut parts = vec![Payload::<T>::new(record.payload, record.items as usize)];
        while let Some(payload) = parts.pop() {
            match self.deliver_one(&payload, created_at).await {
                Step::Done => {}
                Step::Abandoned => return (seq, Outcome::Abandoned),
                Step::Split => match payload.halves() {
                    Some((head, rest)) => {
                        parts.push(rest);
                        parts.push(head);
                    }
                    None => {
                        self.metrics.failed("too_large", payload.items);
                        if self.log_allowed() {
                            tracing::warn!(exporter = %self.id, items = payload.items, bytes = payload.bytes.len(),
                                "the destination refuses a request this small as too large; its items are dropped");
                        }
                    }
                },
            }
        }
        (seq, Outcome::Done)
    }

    async fn deliver_one(&self, payload: &Payload<T>, created_at: SystemTime) -> Step {
        let retry = &self.policy.retry;
        let mut backoff = Backoff::new(retry);
        let started = Instant::now();
        let mut auth_failures = 0u32;
        loop {
            if let Some(max_age) = self.policy.max_age {
                if created_at.elapsed().unwrap_or_default() > max_age {
                    self.metrics.failed("max_age", payload.items);
                    return Step::Done;
                }
            }
            let permit = tokio::select! {
                biased;
                p = self.breaker.permit() => p,
                _ = self.finish.cancelled() => return Step::Abandoned,
            };
            if let Some(bw) = &self.policy.bandwidth {
                let waited = bw.ready().await;
                self.metrics.throttled(waited);
            }
            let err = match self.exporter.export(payload).await {
                Ok(d) => {
                    self.breaker.success();
                    let rejected = d.rejected.items.min(payload.items);
                    let mut dropped = 0;
                    for (reason, n) in &d.dropped {
                        let n = (*n).min(payload.items - rejected - dropped);
                        if n > 0 {
                            self.metrics.failed(reason, n);
                            dropped += n;
                        }
                    }
                    self.metrics
                        .sent(payload.items - rejected - dropped, d.wire_bytes);
                    if rejected > 0 {
                        self.metrics.failed("rejected_by_destination", rejected);
                        if self.log_allowed() {
                            tracing::warn!(exporter = %self.id, rejected, message = %d.rejected.message, "destination rejected part of a batch (partial_success)");
                        }
                    }
                    return Step::Done;
                }
                Err(e) => e,
            };
            match err.class {
                ErrorClass::Permanent => {
                    self.breaker.success();
                    return self.drop_permanently(payload, &err);
                }
                ErrorClass::TooLarge => {
                    self.breaker.success();
                    return Step::Split;
                }
                ErrorClass::Unauthorized => {
                    self.breaker.success();
                    auth_failures += 1;
                    if auth_failures >= retry.auth_failure_attempts.max(1) {
                        return self.drop_permanently(payload, &err);
                    }
                }
                ErrorClass::Retryable => self.breaker.failure(permit, err.retry_after),
            }
            if !retry.enabled {
                return self.drop_permanently(payload, &err);
            }
            let max_elapsed = retry.max_elapsed_time.get();
            if !max_elapsed.is_zero() && started.elapsed() >= max_elapsed {
                self.metrics.failed("retries_exhausted", payload.items);
                if self.log_allowed() {
                    tracing::warn!(exporter = %self.id, items = payload.items, reason = %err.reason, error = %err.message, after = ?max_elapsed,
                        "giving up on a batch after retry_on_failure.max_elapsed_time; its items are dropped");
                }
                return Step::Done;
            }
            self.metrics.retried(&err.reason);
            if self.finish.is_cancelled() {
                self.breaker.release(permit);
                return Step::Abandoned; // stopping: the record stays queued for next time
            }
            let delay = backoff.next_delay(err.retry_after);
            if self.log_allowed() {
                tracing::warn!(exporter = %self.id, reason = %err.reason, error = %err.message, retry_in = ?delay,
                    "export failed; the record stays queued and is retried");
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.finish.cancelled() => return Step::Abandoned,
            }
        }
    }

    fn drop_permanently(&self, payload: &Payload<T>, err: &ExportError) -> Step {
        self.metrics.failed(&err.reason, payload.items);
        if self.log_allowed() {
            tracing::warn!(exporter = %self.id, items = payload.items, reason = %err.reason, error = %err.message,
                "the destination refused a batch permanently; its items are dropped");
        }
        Step::Done
    }
}

/// At most one log line per second for a repeating failure: a dead link must not flood the log.
#[derive(Default)]
struct LogLimiter {
    last: Option<Instant>,
}

impl LogLimiter {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < Duration::from_secs(1))
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// Compresses an HTTP body as configured; returns the Content-Encoding to send with it.
pub fn compress(
    compression: Compression,
    body: Vec<u8>,
) -> std::io::Result<(Vec<u8>, Option<&'static str>)> {
    use std::io::Write;
    match compression {
        Compression::None => Ok((body, None)),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            enc.write_all(&body)?;
            Ok((enc.finish()?, Some("gzip")))
        }
        Compression::Zstd => Ok((zstd::encode_all(&body[..], 1)?, Some("zstd"))),
    }
}
