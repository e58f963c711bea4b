//! Processor `transform`: a VRL program run on every span and every log record.
//!
//! Each item is offered to the program as an object built from the OTLP item (see [`value`] for the
//! fields), and the object the program leaves is written back into the item. The item's resource and
//! scope are visible as `.resource` and `.scope` but read-only: they are shared by the item's
//! neighbours, so a change there is ignored rather than applied to some items and not others.
//!
//! The program was compiled once at config load (errors point into the program); here it is compiled
//! again from the same text. A runtime error (or a result that cannot be written back) is counted in
//! `outpost_transform_errors_total` and, per `drop_on_error`, leaves the item exactly as it was or drops
//! it (also counted as dropped, reason `transform_error`). `abort` drops the item when `drop_on_abort`
//! (the default), counted under reason `transform_abort`.
//!
//! Timestamps inside the program are in UTC, so a program behaves the same on every node.

pub mod value;

use prometheus_client::metrics::counter::Counter;
use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::state::RuntimeState;
use vrl::compiler::{Program, TargetValue, TimeZone};
use vrl::value::{Secrets, Value};

use outpost_config::TransformProcessorConfig;

use crate::batch::Batch;
use crate::processor::{Emit, Processor};
use crate::signal::SignalData;

pub use value::Transformable;

pub const ERROR_REASON: &str = "transform_error";
pub const ABORT_REASON: &str = "transform_abort";

/// What became of one item that did not transform cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome {
    /// A runtime error, or a result that cannot be written back; the item is unchanged.
    Failed,
    /// The program called `abort`.
    Aborted,
}

/// Runs one compiled program on item objects.
pub struct Vrl {
    program: Program,
    runtime: Runtime,
    timezone: TimeZone,
}

impl Vrl {
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = outpost_config::transform::compile(source).map_err(|errors| {
            errors
                .iter()
                .map(|e| format!("line {}, column {}: {}", e.line, e.column, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok(Self {
            program,
            runtime: Runtime::new(RuntimeState::default()),
            timezone: TimeZone::parse("UTC").unwrap_or_default(),
        })
    }

    /// Runs the program on one item object; the object it leaves, or what went wrong.
    pub fn run(&mut self, item: Value) -> Result<Value, ItemOutcome> {
        let mut target = TargetValue {
            value: item,
            metadata: Value::Object(Default::default()),
            secrets: Secrets::default(),
        };
        let result = self
            .runtime
            .resolve(&mut target, &self.program, &self.timezone);
        self.runtime.clear();
        match result {
            Ok(_) => Ok(target.value),
            Err(Terminate::Abort(_)) => Err(ItemOutcome::Aborted),
            Err(Terminate::Error(e)) => {
                tracing::debug!(error = %e, "transform program failed on an item");
                Err(ItemOutcome::Failed)
            }
        }
    }
}

pub struct TransformProcessor {
    vrl: Vrl,
    policy: Policy,
}

struct Policy {
    drop_on_error: bool,
    drop_on_abort: bool,
    errors_kept: Counter,
    errors_dropped: Counter,
}

impl Policy {
    /// Whether an item with `outcome` is kept; counts it.
    fn keep(&self, outcome: ItemOutcome, dropped: &mut [usize; 2]) -> bool {
        match outcome {
            ItemOutcome::Failed if self.drop_on_error => {
                self.errors_dropped.inc();
                dropped[0] += 1;
                false
            }
            ItemOutcome::Failed => {
                self.errors_kept.inc();
                true
            }
            ItemOutcome::Aborted if self.drop_on_abort => {
                dropped[1] += 1;
                false
            }
            ItemOutcome::Aborted => true,
        }
    }
}

impl TransformProcessor {
    /// Compiles the program of `cfg`; `errors` are the (kept, dropped) counters of runtime errors.
    pub fn new(cfg: &TransformProcessorConfig, errors: (Counter, Counter)) -> Result<Self, String> {
        Ok(Self {
            vrl: Vrl::compile(&cfg.program()?)?,
            policy: Policy {
                drop_on_error: cfg.drop_on_error,
                drop_on_abort: cfg.drop_on_abort,
                errors_kept: errors.0,
                errors_dropped: errors.1,
            },
        })
    }
}

impl<T: SignalData + Transformable> Processor<T> for TransformProcessor {
    fn process(&mut self, mut batch: Batch<T>, out: &mut Emit<T>) {
        let mut dropped = [0usize; 2];
        let vrl = &mut self.vrl;
        let policy = &self.policy;
        batch.data.transform(&mut |item| vrl.run(item), &mut |o| {
            policy.keep(o, &mut dropped)
        });
        out.dropped(ERROR_REASON, dropped[0]);
        out.dropped(ABORT_REASON, dropped[1]);
        if batch.item_count() == 0 {
            batch.discard();
        } else {
            out.push(batch);
        }
    }
}

#[cfg(test)]
mod tests;
