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

use futures::future::BoxFuture;
use outpost_config::{ComponentId, Compression, ExporterConfig};
use outpost_pipelines::telemetry::ExporterMetrics;
use tokio::sync::mpsc;

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

pub trait Exporter<T>: Send + 'static {
    fn export(&mut self, data: T) -> BoxFuture<'_, Result<Delivered, ExportError>>;

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

/// Runs one exporter until its channel closes, then shuts it down.
pub async fn run<T: OtlpSignal>(
    id: String,
    mut exporter: Box<dyn Exporter<T>>,
    mut rx: mpsc::Receiver<T>,
    metrics: ExporterMetrics,
) {
    let mut failures_logged = LogLimiter::default();
    while let Some(data) = rx.recv().await {
        let items = data.item_count();
        match exporter.export(data).await {
            Ok(d) => {
                let rejected = d.rejected.items.min(items);
                metrics.sent(items - rejected, d.wire_bytes);
                if rejected > 0 {
                    metrics.failed("rejected_by_destination", rejected);
                    if failures_logged.allow() {
                        tracing::warn!(exporter = %id, rejected, message = %d.rejected.message, "destination rejected part of a batch");
                    }
                }
            }
            Err(e) => {
                metrics.failed(&e.reason, items);
                if failures_logged.allow() {
                    tracing::warn!(exporter = %id, items, reason = %e.reason, retryable = e.retryable, error = %e.message, "export failed; items dropped");
                }
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
