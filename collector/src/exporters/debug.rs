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
    window_start: Instant,
    in_window: u32,
}

impl DebugExporter {
    pub fn new(id: &ComponentId, cfg: &DebugExporterConfig) -> Self {
        Self {
            id: id.to_string(),
            verbosity: cfg.verbosity,
            initial: cfg.sampling_initial.unwrap_or(u32::MAX),
            thereafter: cfg.sampling_thereafter.unwrap_or(1).max(1),
            window_start: Instant::now(),
            in_window: 0,
        }
    }

    /// The first `initial` batches each second are logged, then every `thereafter`-th.
    fn sampled(&mut self) -> bool {
        if self.window_start.elapsed().as_secs() >= 1 {
            self.window_start = Instant::now();
            self.in_window = 0;
        }
        self.in_window = self.in_window.saturating_add(1);
        self.in_window <= self.initial
            || (self.in_window - self.initial).is_multiple_of(self.thereafter)
    }
}

impl<T: OtlpSignal> Exporter<T> for DebugExporter {
    fn export<'a>(
        &'a mut self,
        payload: &'a Payload<T>,
    ) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        Box::pin(async move {
            if self.sampled() {
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
