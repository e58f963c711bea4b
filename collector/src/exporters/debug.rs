//! Exporter `debug`: writes what reaches it to outpost's own log, at the configured verbosity. For
//! trying a config out and for development, not for production volumes (`sampling_*` thins it).

use std::time::Instant;

use futures::future::BoxFuture;
use outpost_config::{ComponentId, DebugExporterConfig, Verbosity};

use super::{Delivered, ExportError, Exporter, Payload};
use crate::otlp::OtlpSignal;

pub struct DebugExporter {
    id: String,
    verbosity: Verbosity,
    initial: u32,
    thereafter: u32,
    /// Start of the current one-second sampling window, and batches seen in it.
    window: std::sync::Mutex<(Instant, u32)>,
}

impl DebugExporter {
    pub fn new(id: &ComponentId, cfg: &DebugExporterConfig) -> Self {
        Self {
            id: id.to_string(),
            verbosity: cfg.verbosity,
            initial: cfg.sampling_initial.unwrap_or(u32::MAX),
            thereafter: cfg.sampling_thereafter.unwrap_or(1).max(1),
            window: std::sync::Mutex::new((Instant::now(), 0)),
        }
    }

    /// The first `initial` batches each second are logged, then every `thereafter`-th.
    fn sampled(&self) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.0.elapsed().as_secs() >= 1 {
            *w = (Instant::now(), 0);
        }
        w.1 = w.1.saturating_add(1);
        w.1 <= self.initial || (w.1 - self.initial).is_multiple_of(self.thereafter)
    }
}

impl<T: OtlpSignal> Exporter<T> for DebugExporter {
    fn reads_payloads(&self) -> bool {
        self.verbosity != Verbosity::Basic
    }

    fn export<'a>(
        &'a self,
        payload: &'a Payload<T>,
    ) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        Box::pin(async move {
            if self.sampled() {
                // `basic` logs the record's item count, which its header carries: decoding the record
                // only to count would cost as much as the rest of a small pipeline (and the queue does
                // not even decompress it: `reads_payloads`).
                if self.verbosity == Verbosity::Basic {
                    let items = payload.items;
                    tracing::info!(exporter = %self.id, signal = %T::SIGNAL, items, "debug exporter");
                    return Ok(Delivered::default());
                }
                let data = payload.decode()?;
                let items = data.item_count();
                tracing::info!(exporter = %self.id, signal = %T::SIGNAL, items, "debug exporter");
                match self.verbosity {
                    Verbosity::Basic => {}
                    Verbosity::Normal => {
                        for line in data.item_lines() {
                            tracing::info!(exporter = %self.id, "{line}");
                        }
                    }
                    Verbosity::Detailed => {
                        let json = serde_json::to_string(&data)
                            .unwrap_or_else(|e| format!("<unencodable: {e}>"));
                        tracing::info!(exporter = %self.id, "{json}");
                    }
                }
            }
            Ok(Delivered::default())
        })
    }
}
