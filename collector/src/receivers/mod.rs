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

use std::sync::{Arc, RwLock};

use outpost_pipelines::telemetry::ReceiverMetrics;
use outpost_pipelines::{Logs, Metrics, PipelineInput, Refusal, Traces};

use crate::otlp::{OtlpSignal, Rejected};

/// The pipelines a receiver feeds, per signal.
#[derive(Clone, Default)]
pub struct Routes {
    pub traces: Vec<PipelineInput<Traces>>,
    pub metrics: Vec<PipelineInput<Metrics>>,
    pub logs: Vec<PipelineInput<Logs>>,
}

/// A receiver's [`Routes`], replaceable while it runs: a config reload that leaves a receiver unchanged
/// points it at the new pipelines without closing its listeners or connections. Every request takes
/// the routes current when it arrives and keeps them until it is answered, so a request in flight
/// during a reload finishes in the pipelines that admitted it.
#[derive(Clone, Default)]
pub struct Inputs(Arc<RwLock<Arc<Routes>>>);

impl Inputs {
    pub fn new(routes: Routes) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(routes))))
    }

    /// The routes for one request (or one batch of a file or a connection).
    pub fn current(&self) -> Arc<Routes> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Points every later request at `routes`; the old routes live on in the requests holding them.
    pub fn replace(&self, routes: Routes) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routes);
    }
}

/// Generic access to [`Routes`] by signal type.
pub trait InputsOf: Sized {
    fn of(routes: &Routes) -> &Vec<PipelineInput<Self>>;
    fn of_mut(routes: &mut Routes) -> &mut Vec<PipelineInput<Self>>;
}

macro_rules! inputs_of {
    ($ty:ty, $field:ident) => {
        impl InputsOf for $ty {
            fn of(routes: &Routes) -> &Vec<PipelineInput<Self>> {
                &routes.$field
            }
            fn of_mut(routes: &mut Routes) -> &mut Vec<PipelineInput<Self>> {
                &mut routes.$field
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
    inputs: &Inputs,
    metrics: &ReceiverMetrics,
    mut data: T,
    bytes: u64,
) -> Outcome {
    let routes = inputs.current();
    let targets = T::of(&routes);
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
