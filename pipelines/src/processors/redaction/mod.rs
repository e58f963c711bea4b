//! Processor `redaction`: removes PII and secrets from telemetry before anything reaches the disk queue
//! or an exporter.
//!
//! What is scanned: every string in resource and scope attributes; span names, status messages, span,
//! event and link attributes and event names; log bodies (strings, and every string nested in maps and
//! arrays) and log attributes; metric data point attributes and exemplar attributes. With
//! `redact_all_types`, integers and doubles too (a card number sent as a number becomes a masked string).
//! Byte values are scanned as bytes.
//!
//! Per attribute, in order: an `ignored_keys` key passes untouched; with an allowlist, a key not in
//! `allowed_keys` is removed; a key matching `blocked_key_patterns` has its whole value masked; otherwise
//! the value goes through the [`engine`], whose findings mask or hash the matched parts, remove the
//! attribute, or drop the whole record. Nested map keys get the ignored / blocked treatment too.
//!
//! It fails closed: a value larger than `max_value_size`, or nested deeper than [`MAX_DEPTH`], is masked
//! whole unless `fail_closed: false`. Every redaction is counted in `outpost_redactions_total{rule,
//! signal}` and every dropped record in the processor's dropped counter (reason `redaction`).

mod batch;
mod digits;
pub mod engine;
mod literals;
pub mod packs;
mod screen;
mod shape;
pub mod validators;
mod walk;

use std::collections::HashSet;
use std::sync::Arc;

use outpost_config::{RedactionProcessorConfig, RedactionSummary};
use regex::bytes::RegexSet;

use crate::batch::Batch;
use crate::processor::{Emit, Processor};
use crate::signal::SignalData;
use crate::telemetry::{RedactionMetrics, Telemetry};

pub use engine::{Engine, Scratch, Verdict};
pub use walk::Redact;

/// Deepest nesting of maps and arrays scanned inside a value; deeper parts are masked whole.
pub const MAX_DEPTH: usize = 32;

/// The reason dropped records are counted under.
pub const DROP_REASON: &str = "redaction";

/// Counter indices after the engine's rules.
pub(crate) mod pseudo {
    pub const BLOCKED_KEY: usize = 0;
    pub const NOT_ALLOWED: usize = 1;
    pub const TOO_LARGE: usize = 2;
    pub const TOO_DEEP: usize = 3;
    pub const IDS: [&str; 4] = [
        "blocked_key_patterns",
        "allowed_keys",
        "too_large",
        "too_deep",
    ];
}

/// What of the processor's settings is not the engine's.
pub(crate) struct Policy {
    pub allowlist_only: bool,
    pub allowed: HashSet<String>,
    pub ignored: HashSet<String>,
    pub blocked_keys: Option<RegexSet>,
    pub redact_all_types: bool,
    pub fail_closed: bool,
    pub summary: RedactionSummary,
}

/// The compiled form of one `redaction` processor's settings, shared by the pipelines that use it.
#[derive(Clone)]
pub struct Redaction {
    engine: Arc<Engine>,
    policy: Arc<Policy>,
}

impl Redaction {
    pub fn new(cfg: &RedactionProcessorConfig) -> Result<Self, String> {
        let blocked_keys = if cfg.blocked_key_patterns.is_empty() {
            None
        } else {
            Some(
                regex::bytes::RegexSetBuilder::new(&cfg.blocked_key_patterns)
                    .unicode(false)
                    .build()
                    .map_err(|e| format!("blocked_key_patterns: {e}"))?,
            )
        };
        Ok(Self {
            engine: Arc::new(packs::engine(cfg)?),
            policy: Arc::new(Policy {
                allowlist_only: cfg.allowlist_only(),
                allowed: cfg.allowed_keys.iter().cloned().collect(),
                ignored: cfg.ignored_keys.iter().cloned().collect(),
                blocked_keys,
                redact_all_types: cfg.redact_all_types,
                fail_closed: cfg.fail_closed,
                summary: cfg.summary,
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A processor for signal `T`, counting into `telemetry`.
    pub fn processor<T: SignalData>(&self, telemetry: &Telemetry) -> RedactionProcessor {
        let ids = self.engine.rule_ids().chain(pseudo::IDS.iter().copied());
        RedactionProcessor {
            metrics: telemetry.redactions(T::SIGNAL, ids),
            counts: vec![0; self.engine.rule_count() + pseudo::IDS.len()],
            redaction: self.clone(),
            scratch: Scratch::default(),
            collected: walk::Collected::default(),
        }
    }
}

/// One pipeline's instance: the shared rules plus its own working memory and counters.
pub struct RedactionProcessor {
    redaction: Redaction,
    scratch: Scratch,
    /// The values of the payload being redacted, as pushed into the batch scan.
    collected: walk::Collected,
    /// Redactions per counter index during one batch, flushed to `metrics` after it.
    counts: Vec<u64>,
    metrics: RedactionMetrics,
}

impl RedactionProcessor {
    /// Redacts `data` in place; returns the number of items dropped.
    ///
    /// The payload's values are scanned as one batch first (see module `walk`), then the findings
    /// applied.
    pub fn redact<T: Redact>(&mut self, data: &mut T) -> usize {
        let engine = &self.redaction.engine;
        self.collected.clear();
        engine.batch_begin(&mut self.scratch);
        data.collect(&mut walk::Collect {
            engine,
            policy: &self.redaction.policy,
            scratch: &mut self.scratch,
            collected: &mut self.collected,
        });
        engine.batch_finish(&mut self.scratch);
        let mut w = walk::Walk {
            engine,
            policy: &self.redaction.policy,
            scratch: &mut self.scratch,
            counts: &mut self.counts,
            collected: Some(&mut self.collected),
        };
        let dropped = data.redact(&mut w);
        self.flush_counts();
        dropped
    }

    /// [`RedactionProcessor::redact`] without the batch scan: each value scanned on its own, as a
    /// reference for tests.
    #[cfg(test)]
    pub(crate) fn redact_value_by_value<T: Redact>(&mut self, data: &mut T) -> usize {
        let mut w = walk::Walk {
            engine: &self.redaction.engine,
            policy: &self.redaction.policy,
            scratch: &mut self.scratch,
            counts: &mut self.counts,
            collected: None,
        };
        let dropped = data.redact(&mut w);
        self.flush_counts();
        dropped
    }

    fn flush_counts(&mut self) {
        for (i, n) in self.counts.iter_mut().enumerate() {
            if *n > 0 {
                self.metrics.add(i, *n);
                *n = 0;
            }
        }
    }
}

impl<T: SignalData + Redact> Processor<T> for RedactionProcessor {
    fn process(&mut self, mut batch: Batch<T>, out: &mut Emit<T>) {
        let dropped = self.redact(&mut batch.data);
        out.dropped(DROP_REASON, dropped);
        if batch.item_count() == 0 {
            // Every item was dropped by policy: the clients' requests still succeed.
            batch.discard();
        } else {
            out.push(batch);
        }
    }
}

#[cfg(test)]
mod tests;
