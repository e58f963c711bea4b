//! Receivers: the entrances of outpost. A receiver decodes requests (or reads files, or syslog
//! messages) into signal payloads and admits them into every pipeline that lists it ([`Inputs`]),
//! answering the client — or advancing its checkpoint — only once the data has left those pipelines
//! (see `outpost_pipelines::batch`).

pub mod filelog;
pub mod gate;
pub mod logrecord;
pub mod offer;
pub mod otlp;
pub mod prometheus;
pub mod prometheus_remote_write;
pub mod syslog;

use std::sync::Arc;

use outpost_pipelines::telemetry::ReceiverMetrics;
use outpost_pipelines::{Logs, Metrics, PipelineInput, Refusal, Traces};

use crate::otlp::{OtlpSignal, Rejected};

/// The pipelines a receiver feeds, per signal.
#[derive(Clone, Default)]
pub struct Inputs {
    pub traces: Vec<PipelineInput<Traces>>,
    pub metrics: Vec<PipelineInput<Metrics>>,
    pub logs: Vec<PipelineInput<Logs>>,
}

/// Generic access to [`Inputs`] by signal type.
pub trait InputsOf: Sized {
    fn of(inputs: &Inputs) -> &Vec<PipelineInput<Self>>;
    fn of_mut(inputs: &mut Inputs) -> &mut Vec<PipelineInput<Self>>;
}

macro_rules! inputs_of {
    ($ty:ty, $field:ident) => {
        impl InputsOf for $ty {
            fn of(inputs: &Inputs) -> &Vec<PipelineInput<Self>> {
                &inputs.$field
            }
            fn of_mut(inputs: &mut Inputs) -> &mut Vec<PipelineInput<Self>> {
                &mut inputs.$field
            }
        }
    };
}
inputs_of!(Traces, traces);
inputs_of!(Metrics, metrics);
inputs_of!(Logs, logs);

/// How a request ended, for the transport to turn into a gRPC status or HTTP response.
pub enum Outcome {
    /// Accepted; `rejected` items were invalid and left out (partial success).
    Accepted(Rejected),
    Refused(Refusal),
    /// No pipeline takes this signal from this receiver.
    NotEnabled,
}

/// Admits one decoded request into every pipeline of its signal and waits for all of them.
pub async fn admit<T: OtlpSignal + InputsOf>(
    inputs: &Arc<Inputs>,
    metrics: &ReceiverMetrics,
    mut data: T,
    bytes: u64,
) -> Outcome {
    let targets = T::of(inputs);
    if targets.is_empty() {
        metrics.refused(T::SIGNAL, "signal_not_enabled", data.item_count());
        return Outcome::NotEnabled;
    }
    let rejected = data.reject_invalid();
    if rejected.items > 0 {
        metrics.refused(T::SIGNAL, "invalid", rejected.items);
    }
    let items = data.item_count();
    if items == 0 {
        return Outcome::Accepted(rejected);
    }
    let mut waits = Vec::with_capacity(targets.len());
    let mut data = Some(data);
    for (i, input) in targets.iter().enumerate() {
        let payload = if i + 1 == targets.len() {
            data.take().expect("taken once, by the last pipeline")
        } else {
            data.as_ref()
                .expect("present until the last pipeline")
                .clone()
        };
        match input.try_admit(payload, bytes) {
            Ok(w) => waits.push(w),
            Err(refusal) => {
                // Pipelines that already took the data keep it; the client's retry may duplicate it
                // there, which at-least-once delivery allows, while refusing loses nothing.
                metrics.refused(T::SIGNAL, refusal.reason(), items);
                return Outcome::Refused(refusal);
            }
        }
    }
    for w in waits {
        if let Err(refusal) = w.wait().await {
            metrics.refused(T::SIGNAL, refusal.reason(), items);
            return Outcome::Refused(refusal);
        }
    }
    metrics.accepted(T::SIGNAL, items);
    Outcome::Accepted(rejected)
}
