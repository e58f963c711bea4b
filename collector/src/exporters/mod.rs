//! Exporters: the way out of outpost. Each exporter of a pipeline runs as its own task reading a bounded
//! channel, so a slow destination slows only its own channel, and through it (see
//! `outpost_pipelines::pipeline`) pushes back on the receivers instead of growing memory.
//!
//! An exporter is written once, generic over the signal ([`OtlpSignal`]); [`build`] picks the
//! implementation from the config. Every outcome is counted: items sent (and bytes on the wire), items
//! failed by reason, items a destination rejected through partial_success.

pub mod debug;
pub mod file;
pub mod otlp_grpc;
pub mod otlp_http;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::marker::PhantomData;

use bytes::Bytes;
use futures::future::BoxFuture;
use outpost_config::{ComponentId, Compression, ExporterConfig};
use outpost_pipelines::queue::{Cursor, QueueError};
use outpost_pipelines::telemetry::ExporterMetrics;
use tokio_util::sync::CancellationToken;

use crate::otlp::{OtlpSignal, Rejected};

/// What a destination said about a delivered payload.
#[derive(Debug, Default)]
pub struct Delivered {
    pub wire_bytes: usize,
    pub rejected: Rejected,
}

/// Why a delivery failed. `reason` is a short, bounded label for `/metrics`.
#[derive(Debug)]
pub struct ExportError {
    pub reason: String,
    pub message: String,
    /// Whether sending the same data again could succeed (transient network or server trouble).
    pub retryable: bool,
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
        T::decode(self.bytes.clone()).map_err(|e| ExportError {
            reason: "undecodable_record".into(),
            message: e.to_string(),
            retryable: false,
        })
    }
}

pub trait Exporter<T>: Send + 'static {
    fn export<'a>(
        &'a mut self,
        payload: &'a Payload<T>,
    ) -> BoxFuture<'a, Result<Delivered, ExportError>>;

    /// Called once when the pipeline stops: write out anything buffered.
    fn shutdown(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Builds exporters, sharing what must be shared between the instances one exporter id gets per signal.
#[derive(Default)]
pub struct Factory {
    files: HashMap<PathBuf, Arc<Mutex<file::FileWriter>>>,
}

impl Factory {
    /// Builds the exporter `id` for signal `T`.
    pub fn build<T: OtlpSignal>(
        &mut self,
        id: &ComponentId,
        cfg: &ExporterConfig,
    ) -> Result<Box<dyn Exporter<T>>, String> {
        Ok(match cfg {
            ExporterConfig::Otlp(c) => Box::new(otlp_grpc::OtlpGrpcExporter::new(id, c)?),
            ExporterConfig::OtlpHttp(c) => Box::new(otlp_http::OtlpHttpExporter::new::<T>(id, c)?),
            ExporterConfig::Debug(c) => Box::new(debug::DebugExporter::new(id, c)),
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

/// How long an exporter told to finish waits for another record before it stops.
const FINISH_IDLE: Duration = Duration::from_millis(50);
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Runs one exporter over its cursor until `stop` (leave at once; what is queued stays queued) or
/// `finish` (deliver what is already queued while the destination accepts it, then leave).
pub async fn run<T: OtlpSignal>(
    id: String,
    mut exporter: Box<dyn Exporter<T>>,
    mut cursor: Cursor,
    metrics: ExporterMetrics,
    finish: CancellationToken,
) {
    let mut log = LogLimiter::default();
    'records: loop {
        let next = if finish.is_cancelled() {
            match tokio::time::timeout(FINISH_IDLE, cursor.next_batch(1)).await {
                Ok(r) => r,
                Err(_) => break, // caught up
            }
        } else {
            tokio::select! {
                r = cursor.next_batch(1) => r,
                _ = finish.cancelled() => continue,
            }
        };
        let records = match next {
            Ok(r) => r,
            Err(QueueError::Closed) => break,
            Err(e) => {
                tracing::error!(exporter = %id, error = %e, "cannot read the queue; retrying in 1s");
                tokio::time::sleep(RETRY_INITIAL).await;
                continue;
            }
        };
        for record in records {
            let payload = Payload::<T>::new(record.payload, record.items as usize);
            let mut delay = RETRY_INITIAL;
            loop {
                match exporter.export(&payload).await {
                    Ok(d) => {
                        let rejected = d.rejected.items.min(payload.items);
                        metrics.sent(payload.items - rejected, d.wire_bytes);
                        if rejected > 0 {
                            metrics.failed("rejected_by_destination", rejected);
                            if log.allow() {
                                tracing::warn!(exporter = %id, rejected, message = %d.rejected.message, "destination rejected part of a batch");
                            }
                        }
                        break;
                    }
                    Err(e) if e.retryable => {
                        metrics.retried(&e.reason);
                        if log.allow() {
                            tracing::warn!(exporter = %id, reason = %e.reason, error = %e.message, retry_in = ?delay, "export failed; the record stays queued and is retried");
                        }
                        if finish.is_cancelled() {
                            break 'records; // shutting down: the record stays queued for next time
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = finish.cancelled() => break 'records,
                        }
                        delay = (delay * 2).min(RETRY_MAX);
                    }
                    Err(e) => {
                        metrics.failed(&e.reason, payload.items);
                        if log.allow() {
                            tracing::warn!(exporter = %id, items = payload.items, reason = %e.reason, error = %e.message, "the destination refused a batch permanently; its items are dropped");
                        }
                        break;
                    }
                }
            }
            if let Err(e) = cursor.ack(record.seq) {
                tracing::error!(exporter = %id, error = %e, "cannot advance the queue cursor; the record may be sent again");
            }
        }
    }
    exporter.shutdown().await;
}

/// At most one log line per second for a repeating failure: a dead link must not flood the log.
#[derive(Default)]
struct LogLimiter {
    last: Option<std::time::Instant>,
}

impl LogLimiter {
    fn allow(&mut self) -> bool {
        let now = std::time::Instant::now();
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
